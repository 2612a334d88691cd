"""Downpour SGD (DistBelief): model replicas fetch parameters from a sharded parameter server and push
gradients to it, each at its own pace.

The child's parameters, as one vector, are cut into S contiguous ranges, each held by a `ParameterShard`
actor that applies the gradients pushed to it with its own optimizer (Adagrad by default, as in the paper;
any torch optimizer, or the child's own, an l2l rule included). K `Replica` actors take work units (a few
minibatches of the epoch's permutation) from the coordinator as they finish the last: a fast replica does
more of them. A replica fetches the parameters every ``n_fetch`` steps and pushes the gradients it
accumulated every ``n_push`` steps; a push records its staleness (updates the shard applied since the
replica fetched) and, with ``max_staleness``, a shard drops a gradient staler than that. The coordinator
snapshots the shards every ``snapshot_every`` units; a shard that dies is restored from its last snapshot,
a replica that dies is replaced and its unit handed out again. With one replica and
``n_fetch = n_push = 1`` this is plain minibatch training with the server's optimizer.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from l2l.nas.distbelief import flat_parameters, gradient, load_flat, optimizer_by_name, partition, server_learning_rate
from l2l.nas.train import adam_factory
from l2l.runs.distbelief import DataParallel, Events, in_bundle, is_death, ray_module, worker_group

if TYPE_CHECKING:
    from l2l.nas.data import Split
    from l2l.nas.train import LossGuard, OptimizerFactory, TrainConfig


class ParameterShard:
    """A Ray actor holding one range of the parameters and the optimizer state that updates it."""

    def __init__(self, values: torch.Tensor, factory: OptimizerFactory, lr: float, weight_decay: float) -> None:
        torch.set_num_threads(1)
        self.param = nn.Parameter(values.clone())
        self.optimizer = factory([self.param], lr)
        if weight_decay:
            for group in self.optimizer.param_groups:
                group["weight_decay"] = weight_decay
        self.version = 0  # updates applied so far

    def ping(self) -> bool:
        """Answers while the shard lives."""
        return True

    def fetch(self) -> tuple[np.ndarray, int]:
        """The shard's parameters and their version (numpy: Ray moves it without pickling the data)."""
        return self.param.detach().numpy().copy(), self.version

    def push(self, grad: np.ndarray, seen: int, max_staleness: int | None) -> tuple[int, bool]:
        """Apply ``grad``, computed on version ``seen``; returns (staleness, applied): a gradient staler than
        ``max_staleness`` updates is dropped."""
        staleness = max(0, self.version - seen)
        if max_staleness is not None and staleness > max_staleness:
            return staleness, False
        self.param.grad = torch.tensor(grad, dtype=self.param.dtype)
        self.optimizer.step()
        self.version += 1
        return staleness, True

    def snapshot(self) -> dict[str, Any]:
        """What restoring the shard needs: parameters, optimizer state, version."""
        return {
            "param": self.param.detach().clone(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "version": self.version,
        }

    def restore(self, snapshot: dict[str, Any]) -> bool:
        """Go back to ``snapshot`` (a new shard replacing a dead one)."""
        with torch.no_grad():
            self.param.copy_(snapshot["param"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.version = snapshot["version"]
        return True


class Replica:
    """A Ray actor holding a model replica and the training set: runs work units against the shards."""

    def __init__(self, model: nn.Module, train: Split, ranges: list[tuple[int, int]], slow: float = 1.0) -> None:
        torch.set_num_threads(1)
        self.model, self.train, self.ranges, self.slow = model, train, ranges, slow
        self.params: torch.Tensor | None = None
        self.versions: list[int] = []
        self.step = 0

    def node(self) -> str:
        """The Ray node this replica runs on."""
        return str(ray_module().get_runtime_context().get_node_id())

    def run(self, batches: list[torch.Tensor], shards: list[Any], p: DataParallel) -> dict[str, Any]:
        """Train on ``batches`` (index tensors): fetch every ``n_fetch`` steps, push every ``n_push`` steps.
        Stops at the first shard that does not answer and says which, with what it did so far."""
        ray = ray_module()
        out: dict[str, Any] = {"losses": [], "loss_sum": 0.0, "correct": 0, "seen": 0}
        out.update(staleness=[], dropped=0, dead=None)
        acc: torch.Tensor | None = None
        accumulated = 0
        pushes: list[Any] = []
        try:
            for idx in batches:
                began = time.perf_counter()
                if self.params is None or self.step % p.n_fetch == 0:
                    fetched = ray.get([s.fetch.remote() for s in shards])
                    self.params = torch.from_numpy(np.concatenate([f[0] for f in fetched]))
                    self.versions = [f[1] for f in fetched]
                x, y = self.train.x[idx], self.train.y[idx]
                loss, grad, correct = gradient(self.model, self.params, x, y)
                acc = grad if acc is None else acc + grad
                accumulated += 1
                self.step += 1
                out["losses"].append(loss)
                out["loss_sum"] += loss * len(y)
                out["correct"] += correct
                out["seen"] += len(y)
                if accumulated == p.n_push:
                    pushes += self._push(acc, shards, p.max_staleness)
                    acc, accumulated = None, 0
                if self.slow > 1:
                    time.sleep((self.slow - 1) * (time.perf_counter() - began))
            if acc is not None:  # the gradients of the unit's last steps are not lost
                pushes += self._push(acc, shards, p.max_staleness)
            for staleness, applied in ray.get(pushes):
                out["staleness"].append(staleness)
                out["dropped"] += not applied
        except Exception as exc:
            if not is_death(exc):
                raise
            self.params = None  # fetch afresh after the shard is restored
            out["dead"] = type(exc).__name__
        return out

    def _push(self, acc: torch.Tensor, shards: list[Any], max_staleness: int | None) -> list[Any]:
        return [
            s.push.remote(acc[a:b].numpy(), v, max_staleness)
            for s, (a, b), v in zip(shards, self.ranges, self.versions, strict=True)
        ]

    def buffers(self) -> list[torch.Tensor]:
        """The replica's buffers (batch-norm statistics), which the parameter server does not hold."""
        return [b.detach().clone() for b in self.model.buffers()]


class Downpour:
    """The `TrainingEngine` of Downpour SGD."""

    def __init__(self, parallel: DataParallel) -> None:
        self.parallel = parallel
        self.events = Events()
        self.shards: list[Any] = []
        self.replicas: list[Any] = []
        self.snapshots: list[dict[str, Any]] = []
        self.group: Any = None
        self.ranges: list[tuple[int, int]] = []
        self.units_done = 0
        self.staleness: list[int] = []
        self.dropped = 0
        self.nodes: set[str] = set()
        self.batch_size = 0
        self._refs: tuple[Any, Any] | None = None
        self._shard_args: tuple[Any, float, float] | None = None
        self.served: tuple[str, float] | None = None

    def start(
        self, model: nn.Module, train: Split, config: TrainConfig, optimizer_factory: OptimizerFactory, seed: int
    ) -> None:
        ray = ray_module()
        p = self.parallel
        flat = flat_parameters(model)
        self.ranges = partition(len(flat), p.shards)
        name = p.server_optimizer
        if name == "auto":  # a child that brings its own optimizer (an update rule being scored) keeps it
            name = "adagrad" if optimizer_factory is adam_factory else "child"
        factory = optimizer_factory if name == "child" else optimizer_by_name(name)
        lr = p.server_lr if p.server_lr is not None else server_learning_rate(name, config.lr)
        self.served = (name, lr)  # what the shards apply, "auto" resolved: recorded with the child
        self._shard_args = (factory, lr, config.weight_decay)
        self.shards = [self._shard(flat[a:b]) for a, b in self.ranges]
        self.snapshots = ray.get([s.snapshot.remote() for s in self.shards])
        self.batch_size = config.batch_size
        self._refs = (ray.put(copy.deepcopy(model).cpu()), ray.put(train))
        self.group = worker_group(p, p.workers)
        self.replicas = [self._replica(i) for i in range(p.workers)]
        self.nodes = set(ray.get([r.node.remote() for r in self.replicas]))

    def _shard(self, values: torch.Tensor) -> Any:
        assert self._shard_args is not None
        cls = ray_module().remote(ParameterShard).options(num_cpus=0, max_restarts=0)
        return cls.remote(values, *self._shard_args)

    def _replica(self, index: int) -> Any:
        assert self._refs is not None
        cls = in_bundle(ray_module().remote(Replica), self.group, index, self.parallel)
        return cls.remote(self._refs[0], self._refs[1], self.ranges, self.parallel.slowdown(index))

    def epoch(
        self, model: nn.Module, train: Split, perm: torch.Tensor, guard: LossGuard, epoch: int
    ) -> tuple[float, int, int]:
        ray = ray_module()
        p = self.parallel
        batches = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
        todo = [batches[i : i + p.unit_batches] for i in range(0, len(batches), p.unit_batches)]
        todo.reverse()  # popped from the end: in order
        running: dict[Any, tuple[int, list[torch.Tensor]]] = {}
        idle = list(range(len(self.replicas)))
        loss_sum, correct, seen, step = 0.0, 0, 0, 0
        while todo or running:
            while idle and todo:
                worker, unit = idle.pop(0), todo.pop()
                running[self.replicas[worker].run.remote(unit, self.shards, p)] = (worker, unit)
            call = ray.wait(list(running), num_returns=1)[0][0]
            worker, unit = running.pop(call)
            try:
                out = ray.get(call)
            except Exception as exc:
                if not is_death(exc):
                    raise
                self.events.add("replica_replaced", replica=worker, epoch=epoch + 1, reason=type(exc).__name__)
                self.replicas[worker] = self._replica(worker)
                todo.append(unit)  # the unit runs again, on whichever replica is free first
                idle.append(worker)
                continue
            for loss in out["losses"]:
                step += 1
                guard.check(loss, f"epoch {epoch + 1}, step {step}")
            loss_sum += out["loss_sum"]
            correct, seen = correct + out["correct"], seen + out["seen"]
            self.staleness += out["staleness"]
            self.dropped += out["dropped"]
            if out["dead"] is not None:
                self._restore_dead_shards(epoch, out["dead"])
                if len(out["losses"]) < len(unit):
                    todo.append(unit[len(out["losses"]) :])
            else:
                self.units_done += 1
                if self.units_done % p.snapshot_every == 0:
                    self._snapshot(epoch)
            idle.append(worker)
        self._pull(model)
        return loss_sum, correct, seen

    def _snapshot(self, epoch: int) -> None:
        ray = ray_module()
        for i, shard in enumerate(self.shards):
            try:
                self.snapshots[i] = ray.get(shard.snapshot.remote())
            except Exception as exc:
                if not is_death(exc):
                    raise
                self._restore(i, epoch, type(exc).__name__)

    def _restore_dead_shards(self, epoch: int, reason: str) -> None:
        ray = ray_module()
        for i, shard in enumerate(self.shards):
            try:
                ray.get(shard.ping.remote(), timeout=30)
            except Exception as exc:
                if not is_death(exc):
                    raise
                self._restore(i, epoch, reason)

    def _restore(self, index: int, epoch: int, reason: str) -> None:
        """Replace dead shard ``index`` by a new one holding its last snapshot."""
        snap = self.snapshots[index]
        shard = self.shards[index] = self._shard(snap["param"])  # held at once: close() kills it whatever happens
        ray_module().get(shard.restore.remote(snap))
        self.events.add("shard_restored", shard=index, epoch=epoch + 1, version=snap["version"], reason=reason)

    def _pull(self, model: nn.Module) -> None:
        """Load the servers' parameters (and a live replica's buffers) into ``model``."""
        ray = ray_module()
        while True:
            try:
                slices = ray.get([s.fetch.remote() for s in self.shards])
                break
            except Exception as exc:
                if not is_death(exc):
                    raise
                self._restore_dead_shards(-1, type(exc).__name__)
        load_flat(model, torch.from_numpy(np.concatenate([s[0] for s in slices])))
        if any(True for _ in model.buffers()):
            buffers = ray.get(self.replicas[0].buffers.remote())
            with torch.no_grad():
                for mine, theirs in zip(model.buffers(), buffers, strict=True):
                    mine.copy_(theirs)

    def record(self) -> dict[str, Any]:
        """The mode's figures for the child's record: staleness, drops, deaths and restores."""
        st = self.staleness
        return {
            "nodes": sorted(self.nodes),
            "shards": len(self.ranges),
            **({"server_optimizer": self.served[0], "server_lr": self.served[1]} if self.served else {}),
            "units": self.units_done,
            "pushes": len(st),
            "staleness_mean": sum(st) / len(st) if st else 0.0,
            "staleness_max": max(st) if st else 0,
            "dropped": self.dropped,
            "events": self.events.log,
            "event_counts": self.events.counts,
        }

    def close(self) -> None:
        ray = ray_module()
        for actor in self.replicas + self.shards:
            ray.kill(actor, no_restart=True)
        self.replicas, self.shards = [], []
        if self.group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.group)
            self.group = None
