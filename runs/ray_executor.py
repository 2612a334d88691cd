"""The Ray executor: children run on a pool of Ray actors across the CPUs and GPUs of one machine or a cluster.

The driver alone talks to the store; workers get the space (and the data it declares, put in Ray's
object store once per run) and return a `Result`. A child runs on the device Ray assigned to it:
CUDA when it was given a GPU (possibly a fraction of one), the CPU otherwise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from l2l.runs.capacity import check_local_gpus, check_options
from l2l.runs.config import EMBEDDED
from l2l.runs.distbelief import DataParallel, DataParallelError
from l2l.runs.executors import ChildTask, Executor, ExecutorError, failure_summary
from l2l.runs.ray_cluster import RayInstance, connect, head_alive
from l2l.runs.ray_worker import SlotActor
from l2l.runs.scheduling import Job, Scheduler, children_per_slot, fit_slots
from l2l.search_spaces.api import Result, SearchSpace
from l2l.search_spaces.registry import FILE_PLUGIN_PREFIX

POLL_S = 0.5
HEAD_CHECK_S = 2.0  # how often a driver waiting for children checks that a joined cluster's head answers


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency; this guards broken installs
        raise ExecutorError(f"the Ray executor needs the 'ray' package: {exc}") from exc
    return ray


@dataclass
class _Actor:
    """The Ray side of a slot: its actor and what the driver knows the actor holds."""

    actor: Any
    ready: Any | None  # the ref that resolves when the actor has started; None once it has
    preparing: Any | None = None  # the ref of its `prepare` call until it returns
    prepared: Any | None = None  # the space ref it was asked to prepare
    holds: set[str] = field(default_factory=set)  # keys of the spaces its actor is known to have loaded
    sent: int = 0  # calls sent to its actor so far: the next one's sequence number
    where: dict[str, Any] = field(default_factory=dict)  # worker (host:pid) and node, once it has started


class _RayWorkers:
    """The Ray executor scheduler's `Workers`: one `SlotActor` per slot, each space put once in Ray's object store."""

    def __init__(self, slot_class: Any, parallel: DataParallel) -> None:
        self.slot_class = slot_class
        self.parallel = parallel
        self.actors: dict[int, _Actor] = {}  # by slot id, as the scheduler numbers them
        self.space_refs: dict[int, tuple[SearchSpace, Any, Any]] = {}

    def start(self, slot: int) -> None:
        actor = self.slot_class.remote()
        self.actors[slot] = _Actor(actor, actor.ping.remote())

    def send(self, slot: int, job: Job) -> Any:
        """Hand ``job`` to ``slot``'s actor, numbered after the calls sent to it before; returns the call's ref."""
        state = self.actors[slot]
        payload = _ray().cloudpickle.dumps((job.task, job.queued, self.parallel))
        ref = state.actor.run.remote(self.space_arg(state, job.space), payload, state.sent)
        state.sent += 1
        return ref

    def retire(self, slot: int, kill: bool) -> None:
        state = self.actors.pop(slot)
        if kill:
            _ray().kill(state.actor, no_restart=True)

    def where(self, slot: int) -> dict[str, Any]:
        state = self.actors.get(slot)
        return dict(state.where) if state is not None else {}

    def outcome(self, future: Any) -> Result | None:
        ray = _ray()
        if not ray.wait([future], timeout=0)[0]:
            return None
        try:
            return ray.get(future)  # type: ignore[no-any-return]
        except ray.exceptions.RayError:  # it died with the worker (or never ran): not a result
            return None

    def refs(self, space: SearchSpace) -> tuple[Any, Any]:
        entry = self.space_refs.get(id(space))
        if entry is None or entry[0] is not space:
            ray = _ray()
            module = sys.modules.get(type(space).__module__)
            if module is not None and module.__name__.startswith(FILE_PLUGIN_PREFIX):
                # a space loaded from path/file.py:Class is not importable on workers: ship its code
                ray.cloudpickle.register_pickle_by_value(module)
            entry = (space, ray.put(space), ray.put(space.shared_data()))  # once per run, not per child
            self.space_refs[id(space)] = entry
        return entry[1], entry[2]

    def space_arg(self, state: _Actor, space: SearchSpace) -> list[Any] | str:
        """What a call to ``state``'s actor passes for ``space``: its key if the actor is known to hold it,
        else its refs."""
        refs = self.refs(space)
        key = refs[0].hex()  # what the slot keys the spaces it loaded by
        if key not in state.holds and state.preparing is not None and state.prepared is refs[0]:
            ready, _ = _ray().wait([state.preparing], timeout=0)
            if ready:
                self.prepared(state)
        return key if key in state.holds else list(refs)

    def prepared(self, state: _Actor) -> None:
        """``state``'s prepare call has returned: note the space as held if it loaded."""
        ray = _ray()
        try:
            loaded = ray.get(state.preparing) is True
        except ray.exceptions.RayError:  # its worker died: the next call, with refs, finds out
            loaded = False
        if loaded and state.prepared is not None:
            state.holds.add(state.prepared.hex())
        state.preparing = None

    def prepare(self, space: SearchSpace) -> None:
        refs = list(self.refs(space))
        for state in self.actors.values():
            if state.prepared is not refs[0]:
                state.preparing, state.prepared = state.actor.prepare.remote(refs), refs[0]

    def loaded(self, slot: int, space: SearchSpace) -> None:
        """A call to ``slot`` returned a result, so its actor holds ``space``."""
        self.actors[slot].holds.add(self.refs(space)[0].hex())


def _deaths() -> tuple[type[Exception], ...]:
    ray = _ray()
    e = ray.exceptions
    return (e.RayActorError, e.WorkerCrashedError, e.NodeDiedError, e.OutOfMemoryError, e.ObjectLostError)


class RayExecutor(Executor):
    """Children on a pool of ``capacity`` Ray actors (slots); failures of workers and timeouts are recorded.

    With no ``address`` an embedded Ray instance sized to this machine starts (and stops with the executor);
    ``address="auto"`` or ``"host:port"`` joins a cluster started with ``ray start``. Each slot holds one child's
    resources for the whole run and runs the children handed to it in order, the next one already waiting at the
    actor. A worker process that dies (its node lost included) is replaced; the child it was running runs again up
    to ``max_retries`` times, then fails. A child running longer than ``child_timeout`` seconds is cancelled (its
    worker killed) and failed. Where children go and what a death or a timeout means is decided by a Ray-free
    `Scheduler`; this class only talks to Ray. ``workers_per_child`` K > 1 trains each child on K workers as
    ``data_parallel`` says (sync, downpour, sandblaster; settings in ``dp_options``: `l2l.runs.distbelief`); those
    workers are actors of their own, holding the child's resources.
    """

    name = "ray"

    def __init__(
        self,
        device: str = "cpu",
        address: str | None = None,
        cpus_per_child: float = 1.0,
        gpus_per_child: float = 0.0,
        max_concurrent: int | None = None,
        child_timeout: float | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
        prefetch: int | None = None,
        workers_per_child: int = 1,
        data_parallel: str | None = None,
        dp_options: Mapping[str, Any] | None = None,
    ) -> None:
        check_options(
            cpus_per_child, gpus_per_child, max_concurrent, child_timeout, max_retries, prefetch, workers_per_child
        )
        if dp_options and data_parallel is None and workers_per_child == 1:
            raise ExecutorError(
                "--dp-option sets how a child's workers train it together; add --workers-per-child K and "
                "--data-parallel sync|downpour|sandblaster"
            )
        try:
            parallel = DataParallel.parse(
                data_parallel or "sync",
                workers_per_child,
                dp_options,
                cpus=cpus_per_child,
                gpus=gpus_per_child,
                record=data_parallel is not None,
            )
        except DataParallelError as exc:
            raise ExecutorError(str(exc)) from None
        self.device, self.workers_per_child, self.parallel = device, workers_per_child, parallel
        cpus_per_child, gpus_per_child = cpus_per_child * workers_per_child, gpus_per_child * workers_per_child
        ray = _ray()
        if ray.is_initialized():  # a Ray instance this process set up itself (tests, notebooks): use it
            self._ray = RayInstance(ray.get_runtime_context().gcs_address, owned=False, token=False)
        else:
            if address in EMBEDDED:
                check_local_gpus(gpus_per_child)  # before an embedded instance starts, not after
            self._ray = connect(address, num_cpus)
        self.where = self._ray.describe()
        self._head_checked, self._head_lost, self._lost = time.monotonic(), 0, False
        try:  # a child (a data-parallel child's worker) must fit one node; else an embedded instance stops here
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            worker = (parallel.cpus, parallel.gpus) if parallel.actors else None
            capacity = fit_slots(ray.cluster_resources(), cpus_per_child, gpus_per_child, max_concurrent, nodes, worker)
        except ExecutorError:
            self._ray.shutdown()
            raise
        # children beyond a slot's running one wait at its actor: a worker starts the next without a round trip
        prefetch = capacity if prefetch is None else prefetch
        # a child whose workers are actors of their own (in a placement group) leaves them its resources
        slot_class = ray.remote(SlotActor).options(
            num_cpus=0 if parallel.actors else cpus_per_child,
            num_gpus=0 if parallel.actors else gpus_per_child,
            max_restarts=0,
            max_task_retries=0,
            max_concurrency=children_per_slot(capacity, prefetch) + 1,  # its children's calls and a ping
        )
        self._workers = _RayWorkers(slot_class, parallel)
        self._scheduler = Scheduler(self._workers, capacity, prefetch, max_retries, child_timeout)
        self._scheduler.top_up()

    @property
    def capacity(self) -> int:
        return self._scheduler.capacity

    @property
    def depth(self) -> int:
        """Children to keep submitted: one running on each slot, ``prefetch`` more waiting at the actors."""
        return self._scheduler.depth

    @property
    def pending(self) -> int:
        return self._scheduler.pending

    @property
    def idle(self) -> int:
        """Started slots with no child to run, not even one waiting for them: they need one now."""
        return self._scheduler.idle

    def finishing(self) -> None:
        """No more children will be submitted: slots that fall idle run backups of children waiting at others."""
        self._scheduler.finishing()

    def prepare(self, space: SearchSpace) -> None:
        """Each slot fetches ``space`` and its data now, in the background, rather than with its first child."""
        self._scheduler.top_up()
        self._workers.prepare(space)

    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        self._scheduler.submit(space, task)

    def next_result(self) -> tuple[ChildTask, Result]:
        ray = _ray()
        scheduler = self._scheduler
        if not scheduler.pending:
            raise ExecutorError("next_result called with no child pending")
        while True:
            scheduler.fill()
            if scheduler.harvested:
                return scheduler.harvested.popleft()
            # checked on every pass, so a stuck child times out even while others keep finishing
            expired = scheduler.expire()
            if expired is not None:
                scheduler.fill()
                return expired
            self._check_head()
            starting = self._starting()
            wait = POLL_S if scheduler.child_timeout is not None or not self._ray.owned else None
            ready, _ = ray.wait([*scheduler.calls, *starting], num_returns=1, timeout=wait)
            if ready and ready[0] in starting:
                self._slot_started(starting[ready[0]])
            elif ready:
                done = self._collect(ready[0])
                if done is not None:
                    scheduler.fill()
                    return done

    def next_results(self) -> list[tuple[ChildTask, Result]]:
        """The next result, and with it every other one that has already come back (one store
        transaction for all of them: at the end of a run they come back together)."""
        ray = _ray()
        scheduler = self._scheduler
        results = [self.next_result()]
        if scheduler.calls:
            ready, _ = ray.wait(list(scheduler.calls), num_returns=len(scheduler.calls), timeout=0)
            for ref in ready:
                if ref in scheduler.calls:  # not retired with a dead slot earlier in this loop
                    done = self._collect(ref)
                    if done is not None:
                        results.append(done)
            scheduler.fill()
        results.extend(scheduler.harvested)  # harvested from slots that died
        scheduler.harvested.clear()
        return results

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until every slot's worker process has started, and has fetched the space if `prepare`
        was called (a run does not need to: a child goes to the first slot that is up). Returns the
        seconds waited; benchmarks use it to time steady work."""
        ray = _ray()
        began = time.perf_counter()
        self._scheduler.top_up()
        while True:
            starting = self._starting()
            preparing = {s.preparing: i for i, s in self._workers.actors.items() if s.preparing is not None}
            left = None if timeout is None else timeout - (time.perf_counter() - began)
            if not (starting or preparing) or (left is not None and left <= 0):
                return time.perf_counter() - began
            refs = [*starting, *preparing]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=left)
            for ref in ready:
                if ref in starting:
                    self._slot_started(starting[ref])
                elif preparing[ref] in self._workers.actors:
                    self._workers.prepared(self._workers.actors[preparing[ref]])

    def _check_head(self, now: bool = False) -> None:
        """Fail in one line when a joined cluster's head stops answering twice in a row, before Ray's own
        reconnection gives up and ends this process with no word. ``now``: check at once (a worker died:
        replacing it would wait on the head), else at most every `HEAD_CHECK_S` seconds."""
        address = self._ray.address
        if self._ray.owned or address is None or self._lost:
            return
        if not now and time.monotonic() - self._head_checked < HEAD_CHECK_S:
            return
        for attempt in range(2 if now else 1):
            self._head_checked = time.monotonic()
            self._head_lost = 0 if head_alive(address) else self._head_lost + 1
            if self._head_lost >= 2:
                self._lost = True  # nothing more is asked of it: killing actors would wait on the head too
                raise ExecutorError(
                    f"the Ray cluster at {address} went away (its head stopped answering); the run can be resumed "
                    "on another cluster with --resume and --address HOST:PORT"
                )
            if now and self._head_lost and attempt == 0:
                time.sleep(1.0)

    def _starting(self) -> dict[Any, int]:
        """The refs that resolve when a slot's actor has started, with their slots."""
        return {s.ready: i for i, s in self._workers.actors.items() if s.ready is not None}

    def _slot_started(self, slot_id: int) -> None:
        ray = _ray()
        state = self._workers.actors[slot_id]
        try:
            where = ray.get(state.ready)
        except ray.exceptions.RayError as exc:
            self._check_head(now=True)
            if self._scheduler.start_failed(slot_id):
                raise ExecutorError(f"Ray cannot start workers for the children: {type(exc).__name__}: {exc}") from exc
        else:
            state.ready, state.where = None, where if isinstance(where, dict) else {}
            self._scheduler.started(slot_id)

    def _collect(self, ref: Any) -> tuple[ChildTask, Result] | None:
        """The child of ``ref`` and its result; None when its worker died and it was queued again."""
        ray = _ray()
        call = self._scheduler.calls[ref]
        try:
            result = ray.get(ref)
        except _deaths() as exc:
            self._check_head(now=True)  # the head gone takes every worker with it: say so, replace none
            return self._scheduler.died(call.slot, f"{type(exc).__name__}: {exc}")
        except ray.exceptions.TaskCancelledError:
            result = Result.failed("cancelled")
        except ray.exceptions.RayError as exc:
            result = Result.failed(f"Ray could not run child {call.number}: {failure_summary(exc)}")
        else:  # the call returned a result, so its slot has loaded the space
            self._workers.loaded(call.slot, call.job.space)
        return self._scheduler.returned(ref, result)

    def cancel_all(self) -> list[ChildTask]:
        # Killing a slot's actor stops its running child; new slots are started when children come.
        # An embedded instance is shut down next, which stops every worker: killing them one by one
        # first would only race with children that are finishing.
        return self._scheduler.cancel_all(kill=not (self._ray.owned or self._lost))

    def shutdown(self) -> None:
        self._scheduler.close(kill=not (self._ray.owned or self._lost))
        self._workers.space_refs.clear()
        self._ray.shutdown()
