"""Sandblaster L-BFGS (DistBelief): a coordinator holds the L-BFGS state, workers compute the full batch's
loss and gradient in many small shards.

The coordinator (this process: the child's driver) runs `torch.optim.LBFGS` on the child's model. Each time
L-BFGS evaluates its closure, the training set is cut into ``work_units`` shards; the coordinator hands
one to each worker and the next one to whichever finishes first (load balancing: a fast worker does more
of them), and once none is left to hand out, an idle worker gets a backup copy of a shard still running
elsewhere; the first copy to return wins. A worker that dies is replaced and its shards go to the others.
Sums are added up in shard order, so the result does not depend on who computed what: the run follows a
single process's full-batch L-BFGS step for step.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from l2l.nas.distbelief import flat_parameters, gradient, partition, set_flat_grad
from l2l.nas.train import adam_factory
from l2l.runs.distbelief import DataParallel, DataParallelError, Events, in_bundle, is_death, ray_module, worker_group

if TYPE_CHECKING:
    from l2l.nas.data import Split
    from l2l.nas.train import LossGuard, OptimizerFactory, TrainConfig


class GradientWorker:
    """A Ray actor holding a copy of the child's model and the training set: the loss and gradient of a shard."""

    def __init__(self, model: nn.Module, train: Split, slow: float = 1.0, seed: int = 0) -> None:
        torch.set_num_threads(1)
        self.model, self.train, self.slow, self.seed = model, train, slow, seed

    def node(self) -> str:
        """The Ray node this worker runs on."""
        return str(ray_module().get_runtime_context().get_node_id())

    def shard(self, flat: np.ndarray, start: int, stop: int, evaluation: int = 0) -> tuple[float, np.ndarray, int, int]:
        """(sum of losses, gradient of that sum, correct predictions, examples) of examples start:stop at ``flat``,
        in the coordinator's ``evaluation``. Its random draws (dropout) are seeded by the child's seed, the
        evaluation and the shard, not by the worker's history: which worker computes a shard, or a backup copy of
        it, changes nothing, and the same seed trains the same network."""
        began = time.perf_counter()
        torch.manual_seed(((self.seed * 1_000_003 + evaluation) * 1_000_003 + start) % (2**63 - 1))  # a long long
        x, y = self.train.x[start:stop], self.train.y[start:stop]
        loss, grad, correct = gradient(self.model, torch.tensor(flat), x, y, reduction="sum")
        if self.slow > 1:  # a straggler: as if its machine were ``slow`` times slower
            time.sleep((self.slow - 1) * (time.perf_counter() - began))
        return loss, grad.numpy(), correct, stop - start


class Sandblaster:
    """The `TrainingEngine` of Sandblaster L-BFGS: one L-BFGS step (``lbfgs_iters`` iterations) per epoch."""

    def __init__(self, parallel: DataParallel) -> None:
        self.parallel = parallel
        self.events = Events()
        self.workers: list[Any] = []
        self.busy: dict[Any, int] = {}  # a still-running call (a backup that lost, say) -> its worker
        self.group: Any = None
        self.units: list[tuple[int, int]] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.evaluations = 0
        self.examples = 0
        self.epoch_computed: list[int] = []  # examples computed by the end of each epoch
        self.backups = 0
        self.backups_won = 0
        self.nodes: set[str] = set()
        self._refs: tuple[Any, Any] | None = None
        self.seed = 0

    def start(
        self, model: nn.Module, train: Split, config: TrainConfig, optimizer_factory: OptimizerFactory, seed: int
    ) -> None:
        if optimizer_factory is not adam_factory:
            raise DataParallelError(
                "sandblaster trains with L-BFGS, so it cannot score the child's own optimizer (an update rule); "
                "use --data-parallel sync or downpour"
            )
        if any(name.endswith("running_mean") for name, _ in model.named_buffers()):
            raise DataParallelError(
                "sandblaster does not train networks with batch norm (the running statistics would stay at "
                "their initial values); use --data-parallel sync or downpour"
            )
        ray = ray_module()
        p = self.parallel
        self.seed = seed
        self._refs = (ray.put(_cpu_copy(model)), ray.put(train))
        self.group = worker_group(p, p.workers)
        self.workers = [self._worker(i) for i in range(p.workers)]
        self.nodes = set(ray.get([w.node.remote() for w in self.workers]))
        self.units = partition(len(train), p.work_units or 4 * p.workers)
        self.optimizer = torch.optim.LBFGS(
            model.parameters(),
            lr=p.lbfgs_lr,
            max_iter=p.lbfgs_iters,
            history_size=p.history_size,
            line_search_fn=None if p.line_search == "none" else p.line_search,
        )

    def _worker(self, index: int) -> Any:
        assert self._refs is not None
        cls = in_bundle(ray_module().remote(GradientWorker), self.group, index, self.parallel)
        return cls.remote(self._refs[0], self._refs[1], self.parallel.slowdown(index), self.seed)

    def epoch(
        self, model: nn.Module, train: Split, perm: torch.Tensor, guard: LossGuard, epoch: int
    ) -> tuple[float, int, int]:
        assert self.optimizer is not None
        first: list[tuple[float, int]] = []

        def closure() -> float:
            loss, grad, correct = self.full_batch(flat_parameters(model))
            guard.check(loss, f"epoch {epoch + 1}, evaluation {self.evaluations}")
            set_flat_grad(model, grad)
            if not first:
                first.append((loss, correct))
            return loss

        self.optimizer.step(closure)
        self.epoch_computed.append(self.examples)
        loss, correct = first[0]
        n = len(train)
        return loss * n, correct, n

    def full_batch(self, flat: torch.Tensor) -> tuple[float, torch.Tensor, int]:
        """Mean loss, its gradient and correct predictions over the training set at parameters ``flat``,
        computed by the workers shard by shard."""
        ray = ray_module()
        ref = ray.put(flat.numpy())  # numpy: each worker reads it from the object store without unpickling
        pending = deque(range(len(self.units)))
        results: dict[int, tuple[float, np.ndarray, int, int]] = {}
        running: dict[Any, tuple[int, int, bool]] = {}  # call -> (shard, worker index, a backup copy?)
        copies = [0] * len(self.units)
        idle = [i for i in range(len(self.workers)) if i not in self.busy.values()]
        while len(results) < len(self.units):
            while idle:
                unit = self._next_unit(pending, running, copies, results)
                if unit is None:
                    break
                worker = idle.pop(0)
                start, stop = self.units[unit]
                call = self.workers[worker].shard.remote(ref, start, stop, self.evaluations)
                running[call] = (unit, worker, copies[unit] > 0)
                copies[unit] += 1
            ready, _ = ray.wait(list(running) + list(self.busy), num_returns=1)
            call = ready[0]
            if call in self.busy:  # a losing copy from an earlier evaluation: its worker is free again
                worker = self.busy.pop(call)
                idle.append(self._checked(call, worker))
                continue
            unit, worker, backup = running.pop(call)
            try:
                out = ray.get(call)
            except Exception as exc:
                if not is_death(exc):
                    raise
                self.events.add("worker_replaced", worker=worker, shard=unit, reason=type(exc).__name__)
                self.workers[worker] = self._worker(worker)
                copies[unit] -= 1
                if unit not in results and copies[unit] == 0:
                    pending.appendleft(unit)  # its shard goes to the next free worker
                idle.append(worker)
                continue
            if unit not in results:
                results[unit] = out
                self.backups_won += backup
            idle.append(worker)
        for call, (_, worker, _) in running.items():  # backups still running: wait for them next time
            self.busy[call] = worker
        self.evaluations += 1
        n = sum(results[u][3] for u in range(len(self.units)))
        self.examples += n
        loss = sum(results[u][0] for u in range(len(self.units))) / n
        grad = torch.from_numpy(np.stack([results[u][1] for u in range(len(self.units))]).sum(0)) / n
        return loss, grad, sum(results[u][2] for u in range(len(self.units)))

    def _next_unit(
        self, pending: deque[int], running: dict[Any, tuple[int, int, bool]], copies: list[int], results: dict[int, Any]
    ) -> int | None:
        """The shard to hand out next: one not started yet, else a backup of the oldest running one that has
        a single copy, else None."""
        if pending:
            return pending.popleft()
        for unit, _, _ in running.values():
            if unit not in results and copies[unit] == 1:
                self.backups += 1
                return unit
        return None

    def _checked(self, call: Any, worker: int) -> int:
        """The worker of a finished leftover call, replaced if it died meanwhile."""
        try:
            ray_module().get(call)
        except Exception as exc:
            if not is_death(exc):
                raise
            self.events.add("worker_replaced", worker=worker, reason=type(exc).__name__)
            self.workers[worker] = self._worker(worker)
        return worker

    def record(self) -> dict[str, Any]:
        """The mode's figures for the child's record."""
        return {
            "nodes": sorted(self.nodes),
            "work_units": len(self.units),
            "evaluations": self.evaluations,
            "examples_computed": self.examples,
            "epoch_computed": list(self.epoch_computed),
            "backups": self.backups,
            "backups_won": self.backups_won,
            "events": self.events.log,
            "event_counts": self.events.counts,
        }

    def close(self) -> None:
        ray = ray_module()
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers, self.busy = [], {}
        if self.group is not None:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(self.group)
            self.group = None


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu()
