"""The weight-sharing search (ENAS, Pham et al. 2018): one set of weights trained alongside the controller.

Each epoch alternates two phases. The shared weights train on the training split, each batch through
an architecture drawn uniformly (the default: weights trained through the controller's own choices
collapse to parameter-free cells, as measured in benchmarks/README.md) or, with ``sampler=controller``
(ENAS proper), from the controller's distribution (`Controller.draw`) after ``warmup`` uniform epochs,
at the epoch's learning rate (``schedule``). Then the controller takes ``controller_steps`` updates, each
on ``batch`` architectures it proposes, rewarded by their metric with the shared weights on one
validation batch (batch norms use that batch's statistics: one recomputed per architecture). At the end
``derive`` architectures are sampled, each scored on the whole validation split, and the best is kept
(status ``derived``); `l2l runs best RUN --retrain` trains it from scratch. Any strategy can drive it:
random search with shared weights is the baseline.

The loop runs in the driver process on the run's device; every epoch is recorded with a checkpoint
(`l2l.runs.store_sharing`), so `--resume` continues after a crash at the start of the lost epoch.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from l2l.controllers import Controller, Proposal, make_controller
from l2l.controllers.base import checked_proposals, checked_stats
from l2l.nas.shared import SharedWeights, SharingError
from l2l.runs.driver import (
    Heartbeat,
    as_stop,
    code_version,
    resumable,
    same_space,
    stop_reason,
    stop_signal,
    take_over,
    this_driver,
)
from l2l.runs.executors import check_device
from l2l.runs.search_config import (
    SearchConfig,
    SearchError,
    SearchInterrupted,
    check_data,
    check_ignored,
    check_name,
)
from l2l.runs.sharing_checkpoint import Checkpoints
from l2l.runs.sharing_config import (
    BLOWUP,
    SharingConfig,
    check_strategy,
    checked_loss,
    resolved_score,
    shared_network_of,
)
from l2l.runs.store import EpochRecord, ScoredChild, Store
from l2l.search_spaces import Spec, decisions_record, load_space
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.sharing import checked_builder, plain_metrics


@dataclass(frozen=True)
class EpochEvent:
    """Told to the progress display after each epoch."""

    epoch: int
    epochs: int
    train_loss: float
    mean_reward: float | None
    entropy: float | None


@dataclass(frozen=True)
class DeriveEvent:
    """Told to the progress display when the derive phase starts and after each candidate it scores:
    ``scored`` of ``candidates`` scored on validation so far."""

    candidates: int
    scored: int = 0


Listener = Callable[[Any], None]
Taken = tuple[dict[str, torch.Tensor | None], torch.nn.Module, float]  # what a trained batch read, its net, its loss


class WeightSharingSearch(Checkpoints):
    """One weight-sharing run over a store; build with `start` or `resume`, then `run`."""

    def __init__(self, store: Store, run_id: int, config: SearchConfig, listener: Listener | None = None) -> None:
        self.store, self.run_id, self.config, self.listener = store, run_id, config, listener
        self.ws = SharingConfig.from_settings(config.weight_sharing or {})
        self.space = load_space(config.space, dict(config.space_options))
        self.network = shared_network_of(self.space)
        self.ws = resolved_score(self.space, self.network, self.ws, config.seed)  # auto: loss or reward
        settings = dict(config.controller)
        if config.strategy.startswith(("reinforce", "ppo")) and "preset" not in settings:
            # rewards are cheap and noisy: sampling one twice is fine; they also change as the shared weights
            # train, so the best early sequences (what the elite term imitates) are no target to lock onto
            settings.setdefault("unique", False)
            settings.setdefault("elite_size", 0)
        self.controller: Controller = make_controller(
            config.strategy, self.space.decisions(), config.seed, settings, Constraints.of(self.space)
        )
        check_device(config.device)  # the shared weights train in this process: its devices, before any run
        self.device = torch.device(config.device)
        seed, build = config.seed, checked_builder(self.space, self.network)
        self.weights = SharedWeights(
            lambda spec: build(spec, seed),
            lambda spec: lambda name, shape: self.network.key(spec, name, shape),
            self.device,
        )
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr = 0.0  # the shared weights' learning rate in the current epoch (`SharingConfig.epoch_lr`)
        self.generator = torch.Generator().manual_seed(seed)
        self.worst: float | None = None  # the worst finite reward so far: what a diverging architecture gets
        self.requeued = 0

    @classmethod
    def start(cls, store: Store, config: SearchConfig, listener: Listener | None = None) -> WeightSharingSearch:
        check_strategy(config.strategy)  # a new run only: a resumed one cannot change its strategy
        check_name(config)
        search = cls(store, 0, config, listener)
        check_ignored(search.space)
        check_data(search.space)  # a plugin's check of the data its epochs need, before a run is recorded
        ws = search.ws
        search.run_id = store.create_run(
            space=config.space,
            strategy=config.strategy,
            config=config.to_json(),
            seed=config.seed,
            n_children=max(ws.epochs - ws.warmup, 0) * ws.controller_steps * config.batch + ws.derive,
            code_version=code_version(),
            name=config.name,
            driver=this_driver(),
            decisions=decisions_record(search.space.decisions()),
        )
        return search

    @classmethod
    def resume(cls, store: Store, run_id: int, listener: Listener | None = None) -> WeightSharingSearch:
        run = resumable(store, run_id, SearchError)
        if run.config.get("weight_sharing") is None:
            raise SearchError(f"run {run_id} is not a weight-sharing search")
        search = cls(store, run_id, SearchConfig.from_json(run.config, recorded=True), listener)
        same_space(store, run, search.space, SearchError)
        take_over(store, run, SearchError)  # marks it running: of two resumes at once, one goes on
        return search

    # the loop ----------------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            with Heartbeat(self.store, self.run_id):
                self._loop()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                stop = as_stop(exc)  # which stop: read once
                self.store.set_run_status(self.run_id, "interrupted", stop_reason(stop))
                raise SearchInterrupted(self.run_id, stop_signal(stop)) from None
            self.store.set_run_status(self.run_id, "failed", f"{type(exc).__name__}: {exc}")
            raise
        self.store.set_run_status(self.run_id, "done")
        return self.run_id

    def _loop(self) -> None:
        start, next_child, n_updates = self._restore()
        for epoch in range(start, self.ws.epochs):
            began = time.perf_counter()
            warming = self.ws.sampler == "controller" and epoch < self.ws.warmup
            sampler = "uniform" if warming else self.ws.sampler
            loss, steps, skipped = self._train_shared(sampler, epoch)
            children: list[ScoredChild] = []
            updates: list[dict[str, Any]] = []
            if epoch >= self.ws.warmup:
                for _ in range(self.ws.controller_steps):
                    scored, update = self._controller_step(next_child, n_updates, epoch)
                    children += scored
                    updates.append(update)
                    next_child += len(scored)
                    n_updates += 1
            rewards = [c.reward for c in children]
            record = EpochRecord(
                epoch=epoch,
                train_loss=loss,
                train_steps=steps,
                mean_reward=sum(rewards) / len(rewards) if rewards else None,
                entropy=sum(u["entropy"] for u in updates) / len(updates) if updates else None,
                updates=len(updates),
                wall_time=time.perf_counter() - began,
                extra={"shared_weights": len(self.weights), "sampler": sampler, "skipped": skipped, "lr": self.lr},
            )
            self.store.record_epoch(self.run_id, record, updates, children, self._checkpoint(epoch), next_child)
            if self.listener:
                self.listener(EpochEvent(epoch, self.ws.epochs, loss, record.mean_reward, record.entropy))
        if not self.store.children(self.run_id, "derived"):
            self._derive(next_child)

    def _batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self.device) for t in batch)

    def _bind(self, spec: Spec) -> torch.nn.Module:
        """The network of ``spec`` on the shared weights; weights met for the first time join the optimizer."""
        try:
            model = self.weights.model(spec)
        except SharingError as exc:  # the space's keys do not fit together: name the architecture that met it
            raise SearchError(f"space {self.space.name!r}, {self.space.describe(spec)}: {exc}") from exc
        new = self.weights.take_new_parameters()
        if self.optimizer is None:
            self.optimizer = self._make_optimizer(list(self.weights.ordered_parameters()))
        elif new:
            self.optimizer.param_groups[0]["params"].extend(new)
        return model

    def _make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        if self.ws.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.ws.momentum, nesterov=True, weight_decay=self.ws.weight_decay
            )
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.ws.weight_decay)

    def _train_shared(self, sampler: str, epoch: int) -> tuple[float, int, int]:
        """One epoch of the shared weights: (mean training loss, batches trained, batches skipped). Each batch
        trains through one architecture; a group of batches makes one step on their mean gradient (one batch,
        or with ``sampler=fair`` a strictly fair group: `Controller.draw_fair`). A batch whose loss is not finite
        or `BLOWUP` times the epoch's mean so far is skipped, and so is a group whose gradient is not finite (an
        architecture that diverges); an epoch of nothing else fails."""
        self.lr = self.ws.epoch_lr(self.ws.lr or float(self.space.options.get("lr", 0.003)), epoch)
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        total, steps, skipped = 0.0, 0, 0  # of the batches stepped
        queue: list[tuple[int, ...]] = []
        taken: list[Taken] = []  # the group's batches trained so far

        def settle() -> None:  # the group's step, and its batches counted
            nonlocal total, steps, skipped, taken
            if self._step(taken):
                for _, _, trained in taken:
                    total, steps = total + trained, steps + 1
            else:
                skipped += len(taken)
            taken = []

        for batch in self.network.train_batches(self.ws.batch_size, self.generator):
            if self.ws.steps and steps + skipped + len(taken) >= self.ws.steps:
                break
            queue = queue or self._draws(sampler)
            spec = self.space.decode(queue.pop(0))
            model = self._bind(spec)
            model.train()
            loss = checked_loss(self.space.name, self.network.loss(model, self._batch(batch)))
            value, done = float(loss.detach()), steps + len(taken)
            if not math.isfinite(value) or (done and value > BLOWUP * (total + sum(t[2] for t in taken)) / done):
                skipped += 1  # an architecture whose loss explodes: its gradient would wreck the shared weights
            else:
                assert self.optimizer is not None
                if not taken:
                    self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                taken.append((self.weights.reads(spec), model, value))
            if taken and not queue:
                settle()
        if taken:  # a group cut short by -W steps or the epoch's end: a step on what it trained
            settle()
        if steps == 0 and not skipped:
            raise SearchError(
                f"space {self.space.name!r}: its shared network's train_batches() gave no batch of -W batch_size="
                f"{self.ws.batch_size} (is it larger than the training split?)"
            )
        if steps == 0:
            raise SearchError(f"the shared weights diverged: no finite training loss in {skipped} batches of an epoch")
        return total / steps, steps, skipped

    def _step(self, taken: list[Taken]) -> bool:
        """One step of the shared weights on the mean gradient of ``taken``'s batches, unless it is not finite."""
        assert self.optimizer is not None
        params = list({id(p): p for _, model, _ in taken for p in model.parameters()}.values())
        if len(taken) > 1:
            for p in params:
                if p.grad is not None:
                    p.grad.div_(len(taken))
        norm = torch.nn.utils.clip_grad_norm_(params, self.ws.grad_clip)
        if not bool(torch.isfinite(norm)):  # a finite loss whose gradient overflows: no step either
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self.weights.step_reads([reads for reads, _, _ in taken], self.optimizer)
        return True

    def _draws(self, sampler: str) -> list[tuple[int, ...]]:
        """The architectures of the next batches, trained into one step (the base class's draws are uniform)."""
        if sampler == "fair":
            return self.controller.draw_fair()
        return (self.controller.draw if sampler == "controller" else partial(Controller.draw, self.controller))(1)

    def _score(self, proposal: Proposal) -> dict[str, float]:
        model = self._bind(self.space.decode(proposal.tokens)).eval()  # scoring trains nothing, batch norms included
        return self._checked(
            self.network.measure(model, self._batch(self.network.val_batch(self.ws.val_batch, self.generator)))
        )

    def _checked(self, measured: Any) -> dict[str, float]:
        """An architecture whose metrics are not all finite (it diverges) gets the failure reward, as a failed
        child of a plain search does: the run's ``failure_reward``, else the worst reward seen so far, else
        the space's. Metrics that are not numbers by name, or lack the reward, are the plugin's mistake."""
        metrics = self.ws.scored(self.space.name, plain_metrics(self.space.name, measured))
        if all(math.isfinite(v) for v in metrics.values()):
            reward = metrics["reward"]
            self.worst = reward if self.worst is None else min(self.worst, reward)
            return metrics
        if self.config.failure_reward is not None:
            failure = self.config.failure_reward
        else:
            failure = self.worst if self.worst is not None else self.space.failure_reward
        return {**metrics, "reward": failure, "diverged": 1.0}

    def _controller_step(self, next_child: int, n_updates: int, epoch: int) -> tuple[list[ScoredChild], dict[str, Any]]:
        proposals = checked_proposals(self.controller, self.controller.propose(self.config.batch), self.config.batch)
        metrics = [self._score(p) for p in proposals]
        rewards = [float(self.controller.reward_of(m)) for m in metrics]
        stats = checked_stats(self.controller, self.controller.update(proposals, rewards))
        numbers = list(range(next_child, next_child + len(proposals)))
        children = [
            ScoredChild(
                number=n,
                batch=n_updates,
                tokens=p.tokens,
                spec=self.space.decode(p.tokens).to_json(),
                status="shared",
                reward=m["reward"],
                metrics=m,
                log_prob=p.log_prob,
                entropy=p.entropy,
                policy_version=p.policy_version,
                info={"epoch": epoch},
                controller_reward=r,
            )
            for n, p, m, r in zip(numbers, proposals, metrics, rewards, strict=True)
        ]
        update = dataclasses.asdict(stats)
        update["batch"] = n_updates
        update["extra"] = {**update["extra"], "children": numbers, "epoch": epoch}
        return children, update

    def _derive(self, next_child: int) -> None:
        """Sample ``derive`` architectures, score each on the whole validation split, keep the best."""
        seen: dict[tuple[int, ...], Proposal] = {}
        for p in checked_proposals(self.controller, self.controller.propose(self.ws.derive), self.ws.derive):
            seen.setdefault(p.tokens, p)
        if self.listener:  # the distinct candidates: a small space has fewer than `derive`
            self.listener(DeriveEvent(len(seen)))
        scored: list[tuple[Proposal, dict[str, float]]] = []
        for p in seen.values():
            model = self._bind(self.space.decode(p.tokens)).eval()
            scored.append((p, self._checked(self.network.measure_split(model, self.device))))
            if self.listener:
                self.listener(DeriveEvent(len(seen), len(scored)))
        # the best by reward, an architecture that diverged only when every one did
        best = max(range(len(scored)), key=lambda i: ("diverged" not in scored[i][1], scored[i][1]["reward"]))
        children = []
        for i, (p, m) in enumerate(scored):
            spec = self.space.decode(p.tokens)
            free = self.network.parameter_free(spec)
            children.append(
                ScoredChild(
                    number=next_child + i,
                    batch=-1,
                    tokens=p.tokens,
                    spec=spec.to_json(),
                    status="derived" if i == best else "candidate",
                    reward=m["reward"],
                    metrics=m,
                    log_prob=p.log_prob,
                    entropy=p.entropy,
                    policy_version=p.policy_version,
                    info={"arch": self.space.describe(spec)} | ({"parameter_free": free} if free is not None else {}),
                )
            )
        self.store.record_scored(self.run_id, children)
