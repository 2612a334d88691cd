"""The search loop: propose, decode, evaluate, record, update, checkpoint; resumable from the store."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from l2l.controllers import Controller, Ledger, Proposal, UpdateStats, make_controller
from l2l.controllers.base import checked_proposals, checked_stats, noncanonical
from l2l.runs.driver import (
    Heartbeat,
    IgnoredInterrupts,
    as_stop,
    code_version,
    record_stop,
    resumable,
    same_space,
    stop_signal,
    take_over,
    this_driver,
)
from l2l.runs.estimates import ArchKeys
from l2l.runs.executors import ChildTask, Executor, WorkerPool, make_executor, to_submit
from l2l.runs.pruning import PrunerBridge
from l2l.runs.search_config import (
    SearchConfig,
    SearchError,
    SearchInterrupted,
    check_costs,
    check_new_run,
    executor_options,
)
from l2l.runs.search_rewards import ControllerRewards
from l2l.runs.store import NewChild, Store, StoreError
from l2l.search_spaces import Context, Result, SearchSpace, Spec, decisions_record, load_space
from l2l.search_spaces.constraints import Constraints, identity_of
from l2l.search_spaces.results import checked_result


@dataclass(frozen=True)
class ChildEvent:
    """Told to the progress display when a child finishes."""

    number: int
    status: str
    reward: float | None
    controller_reward: float
    error: str | None
    arch: tuple[int, ...] = ()  # the child's architecture: its canonical tokens (`l2l.runs.estimates.ArchKeys`)


@dataclass(frozen=True)
class BatchEvent:
    """Told to the progress display after each controller update."""

    batch: int
    stats: UpdateStats
    done: int
    total: int


@dataclass(frozen=True)
class NoticeEvent:
    """Told to the progress display the first time a run's children report something the user should know
    (a GPU reserved and not used, say): once per run, not once per child."""

    text: str


Listener = Callable[[ChildEvent | BatchEvent | NoticeEvent], None]


def child_seed(run_seed: int, number: int) -> int:
    """Each child's seed depends only on the run's seed and the child's number."""
    return (run_seed * 1_000_003 + number * 7_919 + 1) % (2**31 - 1)


class Search:
    """One run of the loop over a store; build with `Search.start` or `Search.resume`."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        config: SearchConfig,
        executor: Executor | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.config = config
        self.space: SearchSpace = load_space(config.space, dict(config.space_options))
        self.controller: Controller = make_controller(
            config.strategy,
            self.space.decisions(),
            config.seed,
            dict(config.controller),
            Constraints.of(self.space),
            exact=self.space.exact_rewards(),
            identity=identity_of(self.space),
        )
        self.controller.plan(config.children)
        check_costs(self.space, self.controller.reward_transform)
        if run_id == 0:  # a new run (`start`), before any executor starts; a stored run resumes as it was
            check_new_run(self.space, config)
        self.executor = executor or make_executor(config.executor, config.device, executor_options(config))
        self.listener = listener
        self.rewards = ControllerRewards(self.controller, self.space, config.failure_reward)
        self.requeued = 0
        self.moved: Mapping[str, Any] | None = None  # how `resume` moved the run (``at``, ``from``, ``to``)
        self.pruner = PrunerBridge(config.pruner) if config.pruner else None
        self._proposals: dict[int, Proposal] = {}
        self.notices: list[str] = []  # what the children reported to the user, each once
        self._fresh = False  # a run just created: the store holds nothing of it to read back
        self.arch_key = ArchKeys(self.space)  # children that share an architecture are evaluations of it

    @classmethod
    def start(
        cls, store: Store, config: SearchConfig, executor: Executor | None = None, listener: Listener | None = None
    ) -> Search:
        """Build the space and controller (which validates the config), then record a new run."""
        if config.weight_sharing is not None:
            raise SearchError("a weight-sharing search runs as l2l.runs.weight_sharing.WeightSharingSearch")
        search = cls(store, 0, config, executor, listener)
        if config.mode == "auto":  # Zoph & Le's batches for one worker; keep many workers busy otherwise
            config = dataclasses.replace(config, mode="async" if search.executor.capacity > 1 else "sync")
            search.config = config
        search.run_id = store.create_run(
            space=config.space,
            strategy=config.strategy,
            config=config.to_json(),
            seed=config.seed,
            n_children=config.children,
            code_version=code_version(),
            name=config.name,
            space_data=search.space.pinned_data(),  # what it measured: the rebuilt space reuses it
            driver=this_driver(),
            decisions=decisions_record(search.space.decisions()),  # what its tokens index
        )
        search._fresh = True
        return search

    @classmethod
    def resume(
        cls,
        store: Store,
        run_id: int,
        executor: Executor | None = None,
        listener: Listener | None = None,
        moves: Mapping[str, Any] | None = None,
    ) -> Search:
        """Continue run ``run_id`` from its last checkpoint; children already finished are not run again.
        ``moves`` (executor options of `l2l.runs.config.MOVABLE`: another cluster, more or fewer children at
        once, another timeout) change where it runs, not what it is; the run records each move."""
        run = resumable(store, run_id, SearchError)
        config = SearchConfig.from_json(run.config, recorded=True)
        if config.weight_sharing is not None:
            raise SearchError(f"run {run_id} is a weight-sharing search (l2l.runs.weight_sharing resumes it)")
        moved = {k: v for k, v in (moves or {}).items() if config.executor_options.get(k) != v}
        if moved:
            old = {k: config.executor_options.get(k) for k in moved}
            move = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "from": old, "to": moved}
            options = {**config.executor_options, **moved}
            config = dataclasses.replace(config, executor_options=options, moves=(*config.moves, move))
        search = cls(store, run_id, config, executor, listener)  # joins the new cluster: refused before recording
        search.space.use_pinned_data(store.space_data(run_id))  # measured at the start, not again
        same_space(store, run, search.space, SearchError)
        take_over(store, run, SearchError)  # before anything is changed: of two resumes at once, one goes on
        if moved:
            store.set_run_config(run_id, config.to_json())
            search.moved = config.moves[-1]
        queued = store.count_children(run_id).get("queued", 0)  # re-queued when the run was interrupted
        search.requeued = queued + store.requeue_unfinished(
            run_id, "the driver stopped while this child ran; run again on resume"
        )
        return search

    def run(self) -> int:
        """Run until the configured number of children is recorded; returns the run id."""
        try:
            if isinstance(self.executor, WorkerPool):
                self.executor.prepare(self.space)
            with Heartbeat(self.store, self.run_id):
                (self._loop_async if self.config.mode == "async" else self._loop)()
        except BaseException as caught:
            exc = as_stop(caught) if isinstance(caught, KeyboardInterrupt) else caught  # which stop: read once
            try:
                with IgnoredInterrupts():  # a second Ctrl-C must not cut the run's state short (it would look alive)
                    record_stop(self.store, self.run_id, exc)
            except StoreError:  # a store that failed the search cannot record its stop: name the first failure
                if not isinstance(exc, StoreError):
                    raise
            finally:  # the workers go even when the store cannot be written; a Ctrl-C stops only the stopping
                with contextlib.suppress(KeyboardInterrupt):
                    self.executor.cancel_all()
                with contextlib.suppress(KeyboardInterrupt):
                    self.executor.shutdown()
            if isinstance(exc, KeyboardInterrupt):
                raise SearchInterrupted(self.run_id, stop_signal(exc)) from None
            raise
        counts = self.store.count_children(self.run_id)  # every child recorded, before Ray stops
        if counts["done"] == 0 and counts["failed"] > 0:  # nothing to name: failed, as runs list and the dashboard say
            self.store.set_run_status(self.run_id, "failed", f"no child succeeded ({counts['failed']} failed)")
        else:
            self.store.set_run_status(self.run_id, "done")
        with contextlib.suppress(KeyboardInterrupt):
            self.executor.shutdown()
        return self.run_id

    def _loop(self) -> None:
        config = self.config
        checkpoint = self.store.latest_checkpoint(self.run_id)
        next_child, batch = 0, 0
        if checkpoint is not None:
            self.controller.load_checkpoint(checkpoint.state, Ledger(*self.store.ledger(self.run_id, checkpoint)))
            next_child, batch = checkpoint.next_child, checkpoint.batch + 1
        recorded = {c.number: c for c in self.store.children(self.run_id)}
        if self.pruner is not None:
            self.pruner.replay(list(recorded.values()))
        for c in recorded.values():
            if c.number < next_child and c.status == "done" and c.controller_reward is not None:
                self.rewards.note(c.controller_reward)
        while next_child < config.children:
            m = min(config.batch, config.children - next_child)
            proposals = checked_proposals(self.controller, self.controller.propose(m), m)
            self._say(noncanonical(self.controller, proposals))
            numbers = list(range(next_child, next_child + m))
            rewards: dict[int, float] = {}
            fresh: list[NewChild] = []
            to_run: list[ChildTask] = []
            for number, proposal in zip(numbers, proposals, strict=True):
                spec = self.space.decode(proposal.tokens)
                old = recorded.get(number)
                if old is not None and old.tokens != proposal.tokens:
                    raise SearchError(
                        f"run {self.run_id}: child {number} in the store has tokens {list(old.tokens)} but the "
                        f"restored controller proposes {list(proposal.tokens)}; checkpoint and children disagree"
                    )
                if old is None:
                    fresh.append(self._new_child(number, batch, spec, proposal))
                if old is not None and old.status in ("done", "failed") and old.controller_reward is not None:
                    rewards[number] = old.controller_reward
                    if old.status == "done":
                        self.rewards.note(old.controller_reward)
                else:
                    to_run.append(ChildTask(number, spec, self._context(number)))
            if fresh:
                self.store.add_children(self.run_id, fresh)
            self._evaluate(to_run, rewards)
            stats = checked_stats(self.controller, self.controller.update(proposals, [rewards[n] for n in numbers]))
            next_child += m
            self._record_update(batch, stats, numbers, next_child)
            if self.listener:
                self.listener(BatchEvent(batch, stats, next_child, config.children))
            batch += 1

    def _record_update(self, batch: int, stats: UpdateStats, numbers: list[int], next_child: int) -> None:
        data = dataclasses.asdict(stats)
        data["extra"] = {**data["extra"], "children": numbers}  # which rewards this update consumed
        self.store.record_update(self.run_id, batch, data, self.controller.checkpoint_bytes(), next_child)

    def _context(self, number: int) -> Context:
        config = self.config
        return Context(
            child=number,
            seed=child_seed(config.seed, number),
            device=config.device,
            budget=dict(config.budget),
            threads=config.threads_per_child,
            report=self.pruner.reporter(number) if self.pruner is not None else None,
        )

    def _loop_async(self) -> None:
        """Keep every worker busy: propose a child as soon as one finishes, update after every m rewards.

        Each child records the policy version it was sampled from; the controller corrects the
        stale ones (importance ratio, truncated). On resume the children recorded after the last
        update are kept: finished ones feed the next update, unfinished ones run again as they were.
        """
        config = self.config
        checkpoint = None if self._fresh else self.store.latest_checkpoint(self.run_id)
        batch = 0
        if checkpoint is not None:
            self.controller.load_checkpoint(checkpoint.state, Ledger(*self.store.ledger(self.run_id, checkpoint)))
            batch = checkpoint.batch + 1
        updates = [] if self._fresh else self.store.updates(self.run_id)
        consumed = {int(n) for u in updates for n in u.extra.get("children", [])}
        recorded = [] if self._fresh else self.store.children(self.run_id)
        finished = sum(c.status in ("done", "failed") for c in recorded)  # for the progress display
        self._fresh = False
        if self.pruner is not None:
            self.pruner.replay(recorded)
        buffer: list[tuple[int, Proposal, float]] = []
        rerun: list[ChildTask] = []
        since = checkpoint.next_child if checkpoint is not None else 0
        after: list[Proposal] = []  # proposed after the checkpoint: the restored controller never made them
        for c in recorded:
            proposal = Proposal(c.tokens, c.log_prob or 0.0, c.entropy or 0.0, c.policy_version)
            if c.number >= since:
                after.append(proposal)
            if c.status in ("done", "failed") and c.controller_reward is not None:
                if c.status == "done":
                    self.rewards.note(c.controller_reward)
                if c.number not in consumed:
                    buffer.append((c.number, proposal, c.controller_reward))
            else:
                spec = self.space.decode(c.tokens)  # its tokens: older l2l stored spec values as text
                rerun.append(ChildTask(c.number, spec, self._context(c.number)))
                self._proposals[c.number] = proposal
        if after:
            self.controller.note_proposed(after)
        next_number = max((c.number for c in recorded), default=-1) + 1
        pool = self.executor if isinstance(self.executor, WorkerPool) else None
        self._submit(rerun)
        while self.executor.pending or next_number < config.children or buffer:
            free = to_submit(self.executor, config.children - next_number)
            if free > 0:  # one policy pass and one transaction for every free worker
                proposals = checked_proposals(self.controller, self.controller.propose(free), free)
                self._say(noncanonical(self.controller, proposals))
                numbers = list(range(next_number, next_number + free))
                specs = [self.space.decode(p.tokens) for p in proposals]
                rows = [self._new_child(n, batch, sp, p) for n, sp, p in zip(numbers, specs, proposals, strict=True)]
                self.store.add_children(self.run_id, rows, running=True)
                for n, sp, p in zip(numbers, specs, proposals, strict=True):
                    self._proposals[n] = p
                    self.executor.submit(self.space, ChildTask(n, sp, self._context(n)))
                next_number += free
                if next_number >= config.children and pool is not None:
                    pool.finishing()
            if free > 0 and to_submit(self.executor, config.children - next_number) > 0:
                continue  # workers and their queues first, then the results
            if self.executor.pending:
                for task, reward in self._finish(self.executor.next_results()):
                    buffer.append((task.number, self._proposals.pop(task.number), reward))
                    finished += 1
            if len(buffer) >= config.batch or (buffer and not self.executor.pending and next_number >= config.children):
                stats = self.controller.update([p for _, p, _ in buffer], [r for _, _, r in buffer])
                stats = checked_stats(self.controller, stats)
                self._record_update(batch, stats, [n for n, _, _ in buffer], next_number)
                if self.listener:
                    self.listener(BatchEvent(batch, stats, finished, config.children))
                buffer = []
                batch += 1

    def _new_child(self, number: int, batch: int, spec: Spec, proposal: Proposal) -> NewChild:
        return NewChild(
            number=number,
            batch=batch,
            tokens=proposal.tokens,
            spec=spec.to_json(),
            log_prob=proposal.log_prob,
            entropy=proposal.entropy,
            policy_version=proposal.policy_version,
        )

    def _evaluate(self, tasks: list[ChildTask], rewards: dict[int, float]) -> None:
        self._submit(tasks)
        while self.executor.pending:
            for task, reward in self._finish(self.executor.next_results()):
                rewards[task.number] = reward

    def _submit(self, tasks: list[ChildTask]) -> None:
        for task in tasks:
            self.executor.submit(self.space, task)
        if tasks:
            self.store.mark_running(self.run_id, [t.number for t in tasks])

    def _say(self, *notices: object) -> None:
        """Tell the user each notice once: the children's, the rewards', the strategy's."""
        for notice in notices:
            if isinstance(notice, str) and notice not in self.notices:
                self.notices.append(notice)
                if self.listener:
                    self.listener(NoticeEvent(notice))

    def _finish(self, finished: list[tuple[ChildTask, Result]]) -> list[tuple[ChildTask, float]]:
        """Record finished children, in one transaction; returns each with the reward its controller gets.
        A result that does not fit the store (from any executor) fails its child, not the search."""
        finished = [(task, self.rewards.fitting(checked_result(result))) for task, result in finished]
        rewards = self.rewards.of([result for _, result in finished])  # a transform that fails stops the run here
        self.store.finish_children(
            self.run_id,
            [(task.number, result.to_json(), r) for (task, result), r in zip(finished, rewards, strict=True)],
        )
        self._say(*self.rewards.said(), *(result.runtime.get("notice") for _, result in finished))
        for (task, result), controller_reward in zip(finished, rewards, strict=True):
            if self.pruner is not None:
                self.pruner.finish(task.number, result)
            if self.listener:
                reward = result.reward if result.ok else None
                arch = self.arch_key(self.space.encode(task.spec))
                self.listener(ChildEvent(task.number, result.status, reward, controller_reward, result.error, arch))
        return [(task, r) for (task, _), r in zip(finished, rewards, strict=True)]
