"""The hook by which DistBelief's training modes (Downpour SGD, Sandblaster L-BFGS; `l2l.runs.distbelief`) train
the child of any space whose children train with `l2l.nas.train.train_classifier`, and the model arithmetic
their workers share.

A `TrainingEngine` set with `use_engine` replaces the single-process epoch of `train_classifier` with its own:
the loop around it (curves, validation, early stops, the test figures) stays the same, so a space needs no
change to train its children Downpour- or Sandblaster-style. A plugin with its own training loop drives the
engine itself: ``engine = current_engine()``, then ``start``, ``epoch`` per epoch and ``close``.
`recording` collects how many examples training processed, and in how long: the throughput a child records.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from l2l.nas.data import Split
    from l2l.nas.train import LossGuard, OptimizerFactory, TrainConfig


class TrainingEngine(Protocol):
    """Trains one child on several workers, an epoch at a time; the model it is given holds the latest
    parameters after each `epoch`."""

    def start(
        self, model: nn.Module, train: Split, config: TrainConfig, optimizer_factory: OptimizerFactory, seed: int
    ) -> None:
        """Set up the workers (and servers) for ``model`` on ``train``."""

    def epoch(
        self, model: nn.Module, train: Split, perm: torch.Tensor, guard: LossGuard, epoch: int
    ) -> tuple[float, int, int]:
        """One epoch; returns (sum of training losses, correct predictions, examples) as the plain loop does."""
        ...

    def close(self) -> None:
        """Release the workers; called once, also when training failed."""


_ENGINE: ContextVar[TrainingEngine | None] = ContextVar("l2l_training_engine", default=None)
_RECORD: ContextVar[TrainingRecord | None] = ContextVar("l2l_training_record", default=None)


@contextmanager
def use_engine(engine: TrainingEngine) -> Iterator[TrainingEngine]:
    """Children trained inside this block train with ``engine`` instead of one process."""
    token = _ENGINE.set(engine)
    try:
        yield engine
    finally:
        _ENGINE.reset(token)


def current_engine() -> TrainingEngine | None:
    """The engine set by `use_engine` around this child, if any."""
    return _ENGINE.get()


@dataclass
class TrainingRecord:
    """What the training runs inside a `recording` block processed: examples and seconds."""

    examples: int = 0
    seconds: float = 0.0
    epoch_examples: list[int] = field(default_factory=list)  # examples processed by the end of each epoch
    epoch_s: list[float] = field(default_factory=list)  # and the seconds of training by then

    @property
    def examples_per_s(self) -> float:
        """Training throughput (0 when nothing trained)."""
        return self.examples / self.seconds if self.seconds > 0 else 0.0


@contextmanager
def recording() -> Iterator[TrainingRecord]:
    """Collect the examples and training time of the children trained inside this block."""
    record = TrainingRecord()
    token = _RECORD.set(record)
    try:
        yield record
    finally:
        _RECORD.reset(token)


def note_training(examples: int, seconds: float) -> None:
    """Called by training loops: adds to the record of an enclosing `recording` block, if any."""
    record = _RECORD.get()
    if record is not None:
        record.examples += examples
        record.seconds += seconds


def note_epoch(examples: int, seconds: float) -> None:
    """Called by training loops after each epoch with the examples processed and seconds trained so far."""
    record = _RECORD.get()
    if record is not None:
        record.epoch_examples.append(examples)
        record.epoch_s.append(round(seconds, 4))


@contextmanager
def slowed(factor: float) -> Iterator[None]:
    """Inside this block every optimizer step waits ``factor - 1`` times the time since the previous one
    ended: the process runs as if on a machine ``factor`` times slower (a straggler, for experiments)."""
    import time

    if factor <= 1:
        yield
        return
    last = [time.perf_counter()]

    def wait(*_: Any) -> None:
        time.sleep((factor - 1) * (time.perf_counter() - last[0]))
        last[0] = time.perf_counter()

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(wait)
    try:
        yield
    finally:
        handle.remove()


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """The model's parameters as one detached CPU vector (what servers hold and workers fetch)."""
    return nn.utils.parameters_to_vector([p.detach() for p in model.parameters()]).cpu()


def load_flat(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy the vector ``flat`` into the model's parameters."""
    with torch.no_grad():
        nn.utils.vector_to_parameters(flat.to(next(model.parameters()).device), list(model.parameters()))


def set_flat_grad(model: nn.Module, grad: torch.Tensor) -> None:
    """Put the vector ``grad`` into the parameters' ``.grad`` (what an optimizer's step reads)."""
    offset = 0
    for p in model.parameters():
        n = p.numel()
        p.grad = grad[offset : offset + n].view_as(p).to(p.device, p.dtype).clone()
        offset += n


def gradient(
    model: nn.Module, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean"
) -> tuple[float, torch.Tensor, int]:
    """(loss, gradient as a CPU vector, correct predictions) of cross-entropy on (x, y) at parameters ``flat``;
    ``reduction`` "sum" gives the sums Sandblaster adds up over shards, "mean" the minibatch mean."""
    load_flat(model, flat)
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y, reduction=reduction)
    loss.backward()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    grad = nn.utils.parameters_to_vector([g.detach() for g in grads]).cpu()
    return float(loss.detach()), grad, int((logits.detach().argmax(1) == y).sum())


def partition(total: int, parts: int) -> list[tuple[int, int]]:
    """``total`` items cut into ``parts`` contiguous ranges of near-equal size (start, stop)."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    parts = min(parts, max(total, 1))
    edges = [round(i * total / parts) for i in range(parts + 1)]
    return [(edges[i], edges[i + 1]) for i in range(parts)]


# torch optimizers a parameter server cannot step with a pushed dense gradient on every kind of parameter
UNSERVABLE = {
    "lbfgs": "its step needs a closure that evaluates the loss again",
    "sparseadam": "it takes sparse gradients only",
    "muon": "each shard holds a flat 1-D range of the parameters, and Muon steps 2-D matrices only",
}


def _optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    known = {
        k.lower(): v
        for k, v in vars(torch.optim).items()
        if isinstance(v, type) and issubclass(v, torch.optim.Optimizer) and v is not torch.optim.Optimizer
    }
    if name.lower() in UNSERVABLE:
        servable = ", ".join(sorted(k for k in known if k not in UNSERVABLE))
        raise ValueError(
            f"server optimizer {name!r} cannot serve pushed gradients: {UNSERVABLE[name.lower()]}; known: child, "
            f"{servable}"
        )
    known = {k: v for k, v in known.items() if k not in UNSERVABLE}
    cls = known.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown server optimizer {name!r}; known: child, {', '.join(sorted(known))}")
    return cls


def server_learning_rate(name: str, child_lr: float) -> float:
    """The rate a parameter server applies when none is set: the torch class's own default (Adagrad's 0.01:
    a child's rate is tuned for its own optimizer, often Adam's 1e-3, far too small for Adagrad), or the
    child's rate for ``child`` or a class without a numeric default."""
    if name == "child":
        return child_lr
    default = inspect.signature(_optimizer_class(name).__init__).parameters.get("lr")
    value = None if default is None else default.default
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else child_lr


def optimizer_by_name(name: str) -> Callable[[Any, float], torch.optim.Optimizer]:
    """The torch optimizer class called ``name`` (case-insensitive: adagrad, sgd, adam, ...) as a factory."""
    cls = _optimizer_class(name)

    def factory(params: Any, lr: float) -> torch.optim.Optimizer:
        return cls(params, lr=lr)  # type: ignore[call-arg]

    return factory
