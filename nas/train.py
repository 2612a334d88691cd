"""Training and evaluation of classifiers with per-epoch curves and early stop of hopeless children."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from l2l.nas.data import Dataset, Split
from l2l.nas.distbelief import current_engine, note_epoch, note_training

OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


class ChildDiverged(RuntimeError):
    """Training produced a NaN or infinite loss, or the loss blew up; the child is stopped at once."""


@dataclass(frozen=True)
class TrainConfig:
    """How long and how a child trains."""

    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    stop_hopeless: bool = True
    blowup_factor: float = 1e3


@dataclass
class TrainOutcome:
    """Final validation and test metrics, and per-epoch curves."""

    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    curves: dict[str, list[float]] = field(default_factory=dict)
    train_time: float = 0.0
    stopped_early: str | None = None
    pruned_at: int | None = None


def _hopeless(val_loss: float, val_acc: float, data: Dataset) -> bool:
    """No better than a uniform guess: loss at least log(classes) and accuracy near chance."""
    return val_loss >= math.log(data.n_classes) and val_acc < 1.5 * data.chance


def adam_factory(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The default child optimizer."""
    return torch.optim.Adam(params, lr=lr)


def _data_parallel() -> tuple[int, int]:
    """(rank, world size) when this process is one of several training one child, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device(device: torch.device) -> torch.device:
    """Where a tensor to all-reduce must live: NCCL reduces only CUDA tensors (those of the training device),
    gloo takes CPU ones."""
    import torch.distributed as dist

    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def _all_sum(values: list[float], world: int, device: torch.device) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=collective_device(device))
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, device: torch.device, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split``."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(split), batch_size):
        x = split.x[start : start + batch_size].to(device)
        y = split.y[start : start + batch_size].to(device)
        logits = model(x)
        total_loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(split), correct / len(split)


@dataclass
class LossGuard:
    """Stops a training run at its first non-finite loss, or one ``blowup_factor`` times its first loss, by
    raising ``error`` (a `ChildDiverged`) that says where: ``check(value, "epoch 2, step 7")``."""

    blowup_factor: float
    error: type[ChildDiverged] = ChildDiverged
    first: float | None = None

    def check(self, value: float, where: str) -> None:
        if not math.isfinite(value):
            raise self.error(f"loss became {value} at {where}")
        if self.first is None:
            self.first = value
        elif value > self.blowup_factor * max(self.first, 1e-8):
            raise self.error(f"loss blew up to {value:.3g} (first loss {self.first:.3g}) at {where}")


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    perm: torch.Tensor,
    batch_size: int,
    guard: LossGuard,
    epoch: int,
    dev: torch.device,
) -> tuple[float, int, int]:
    """One pass over ``perm``; returns (sum of losses, correct, examples) of this process's shards."""
    rank, world = _data_parallel()
    seen, loss_sum, correct = 0, 0.0, 0
    for start in range(0, len(perm), batch_size):
        batch_idx = perm[start : start + batch_size]
        idx = batch_idx[rank::world]
        x, y = train.x[idx].to(dev), train.y[idx].to(dev)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        local = value = loss.item()
        if world > 1:
            # every process must see the same value, or one stops while the others wait for it
            total, count = _all_sum([local * len(y), float(len(y))], world, dev)
            value = total / count
            # DDP averages the K gradients: weigh each shard by its size so the result is the
            # gradient of the global batch's mean loss, as with one process
            loss = loss * (len(y) * world / len(batch_idx))
        guard.check(value, f"epoch {epoch + 1}, step {start // batch_size + 1}")
        loss.backward()
        optimizer.step()
        seen += len(y)
        loss_sum += local * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
    return loss_sum, correct, seen


def _optimizer(model: nn.Module, config: TrainConfig, factory: OptimizerFactory) -> torch.optim.Optimizer:
    optimizer = factory(model.parameters(), config.lr)
    if config.weight_decay:
        for group in optimizer.param_groups:
            group["weight_decay"] = config.weight_decay
    return optimizer


def _stop_reason(
    epoch: int,
    val_loss: float,
    val_acc: float,
    config: TrainConfig,
    data: Dataset,
    should_stop: Callable[[int, float], bool] | None,
) -> tuple[str, int | None] | None:
    """Why training stops after ``epoch`` (and the epoch it was pruned at), or None to go on."""
    if epoch == 0 and config.stop_hopeless and config.epochs > 1 and _hopeless(val_loss, val_acc, data):
        reason = (
            f"after epoch 1 validation loss {val_loss:.3f} and accuracy {val_acc:.3f} are no better than "
            f"chance (loss {math.log(data.n_classes):.3f}, accuracy {data.chance:.3f})"
        )
        return reason, None
    if should_stop is not None and epoch + 1 < config.epochs and should_stop(epoch, val_acc):
        return f"pruned after epoch {epoch + 1} (validation accuracy {val_acc:.3f})", epoch + 1
    return None


def _record_epoch(
    curves: dict[str, list[float]],
    loss_sum: float,
    correct: int,
    seen: int,
    val_loss: float,
    val_acc: float,
    epoch: int,
    config: TrainConfig,
    data: Dataset,
    should_stop: Callable[[int, float], bool] | None,
) -> tuple[str, int | None] | None:
    """Append the epoch's figures to ``curves``; why training stops now, or None."""
    curves["train_loss"].append(loss_sum / seen)
    curves["train_acc"].append(correct / seen)
    curves["val_loss"].append(val_loss)
    curves["val_acc"].append(val_acc)
    if not math.isfinite(val_loss):
        raise ChildDiverged(f"validation loss became {val_loss} at epoch {epoch + 1}")
    return _stop_reason(epoch, val_loss, val_acc, config, data, should_stop)


def train_classifier(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    seed: int,
    device: str = "cpu",
    optimizer_factory: OptimizerFactory = adam_factory,
    should_stop: Callable[[int, float], bool] | None = None,
) -> TrainOutcome:
    """Train with minibatches for ``config.epochs`` epochs.

    Raises `ChildDiverged` at the first non-finite or exploding loss. A child no better than chance
    after its first epoch stops there and says so in ``stopped_early``. Curves hold one value per
    epoch: train_loss, train_acc, val_loss, val_acc.

    Inside a `torch.distributed` process group (``--workers-per-child``) the model is wrapped in
    DistributedDataParallel and each of the K processes takes every K-th example of each global
    batch; gradients are averaged across them, so the run follows the single-process one. Inside
    `l2l.nas.distbelief.use_engine` (Downpour, Sandblaster) each epoch is the engine's.
    """
    dev = torch.device(device)
    model.to(dev)
    _, world = _data_parallel()
    engine = current_engine() if world == 1 else None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = _optimizer(model, config, optimizer_factory)
    gen = torch.Generator().manual_seed(seed)
    curves: dict[str, list[float]] = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": []}
    guard = LossGuard(config.blowup_factor)
    stop: tuple[str, int | None] | None = None
    examples = 0
    try:
        if engine is not None:
            engine.start(model, data.train, config, optimizer_factory, seed)
        started = time.perf_counter()  # after the engine's workers started: throughput counts training
        for epoch in range(config.epochs):
            model.train()
            perm = torch.randperm(len(data.train.y), generator=gen)
            if engine is not None:
                loss_sum, correct, seen = engine.epoch(model, data.train, perm, guard, epoch)
            else:
                loss_sum, correct, seen = _train_epoch(
                    model, optimizer, data.train, perm, config.batch_size, guard, epoch, dev
                )
            val_loss, val_acc = evaluate(model, data.val, dev)
            if world > 1:
                loss_sum, correct_f, seen_f = _all_sum([loss_sum, float(correct), float(seen)], world, dev)
                correct, seen = int(correct_f), int(seen_f)
            examples += seen
            note_epoch(examples, time.perf_counter() - started)
            stop = _record_epoch(curves, loss_sum, correct, seen, val_loss, val_acc, epoch, config, data, should_stop)
            if stop is not None:
                break
    finally:
        if engine is not None:
            engine.close()
    train_time = time.perf_counter() - started
    note_training(examples, train_time)
    test_loss, test_acc = evaluate(model, data.test, dev)
    return TrainOutcome(
        val_loss=curves["val_loss"][-1],
        val_acc=curves["val_acc"][-1],
        test_loss=test_loss,
        test_acc=test_acc,
        curves=curves,
        train_time=train_time,
        stopped_early=stop[0] if stop else None,
        pruned_at=stop[1] if stop else None,
    )
