"""Child tasks of optimizer search: train a fixed small model with a candidate rule at a few learning rates.

The model, its initial weights and the batch order are the same for every candidate (they depend on
the task's seed only), so two rules are compared on the same footing; the best learning rate counts.
Learning rates are tried from the smallest up: a rule that diverges at the smallest fails at once,
and one that diverges at a larger rate stops the sweep there, since larger rates diverge too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from l2l.nas.data import Dataset, load_dataset
from l2l.nas.small import small_cnn, small_mlp
from l2l.nas.train import ChildDiverged, OptimizerFactory, TrainConfig, TrainOutcome, train_classifier
from l2l.optsearch.compiler import compile_rule
from l2l.optsearch.language import Rule

MODELS: dict[str, Callable[[int, int], nn.Module]] = {"cnn": small_cnn, "mlp": small_mlp}


class RuleDiverged(RuntimeError):
    """The rule produced NaN or inf, or blew the loss up, at the smallest learning rate tried."""


@dataclass(frozen=True)
class Task:
    """A fixed model on a dataset, trained for ``epochs`` at each of ``lrs``."""

    name: str
    dataset: str
    model: str
    epochs: int = 3
    batch_size: int = 64
    lrs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown task model {self.model!r}; known: {', '.join(MODELS)}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"task {self.name!r} needs epochs, batch_size >= 1 and positive lrs, got {self}")

    def data(self) -> Dataset:
        """The task's dataset (loaded once per process)."""
        return load_dataset(self.dataset)

    def total_steps(self) -> int:
        """Optimizer steps of one training run, the horizon of the decay schedules."""
        return self.epochs * math.ceil(len(self.data().train) / self.batch_size)

    def build(self) -> nn.Module:
        """The model with the task's fixed initial weights."""
        data = self.data()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return MODELS[self.model](math.prod(data.input_shape), data.n_classes)


# the task the search trains children on, and one it never sees (another dataset and model)
CHILD_TASK = Task("digits-cnn", "digits", "cnn")
UNSEEN_TASK = Task("synthetic-mlp", "synthetic", "mlp", epochs=5)
TASKS = {t.name: t for t in (CHILD_TASK, UNSEEN_TASK)}


@dataclass
class Sweep:
    """The outcome of training at each learning rate; the best one counts."""

    runs: dict[float, TrainOutcome] = field(default_factory=dict)
    diverged: dict[float, str] = field(default_factory=dict)

    @property
    def best_lr(self) -> float:
        return max(self.runs, key=lambda lr: (self.runs[lr].val_acc, -self.runs[lr].val_loss))

    @property
    def best(self) -> TrainOutcome:
        return self.runs[self.best_lr]

    def summary(self) -> dict[str, Any]:
        """JSON-ready per-lr accuracies and divergence reasons."""
        return {
            "best_lr": self.best_lr,
            "val_acc_by_lr": {str(lr): out.val_acc for lr, out in self.runs.items()},
            "diverged": {str(lr): why for lr, why in self.diverged.items()},
        }


def rule_factory(rule: Rule, task: Task) -> OptimizerFactory:
    """An optimizer factory for ``rule`` with the task's horizon for the decay schedules."""
    return compile_rule(rule, total_steps=task.total_steps())


def sweep(
    factory: OptimizerFactory,
    task: Task,
    *,
    lrs: Sequence[float] | None = None,
    device: str = "cpu",
) -> Sweep:
    """Train the task's model with ``factory`` at each learning rate (smallest first)."""
    data = task.data()
    out = Sweep()
    for i, lr in enumerate(sorted(lrs or task.lrs)):
        config = TrainConfig(epochs=task.epochs, lr=lr, batch_size=task.batch_size)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(task.seed + 1)  # noise and drop() in rules draw from here: repeatable
                out.runs[lr] = train_classifier(
                    task.build(), data, config, seed=task.seed, device=device, optimizer_factory=factory
                )
        except ChildDiverged as exc:
            out.diverged[lr] = str(exc)
            if i == 0:
                raise RuleDiverged(f"diverged at the smallest learning rate {lr:g}: {exc}") from exc
            break  # larger rates diverge too: do not spend the rest of the budget
    return out


def baseline_factory(name: str) -> OptimizerFactory:
    """Hand-designed references: torch.optim's SGD with momentum 0.9 and Adam."""
    if name == "sgd-momentum":
        return lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adam":
        return lambda params, lr: torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown baseline {name!r}; known: sgd-momentum, adam")


# a finer grid for tuning the baselines than the one children get: they are tuned, not handicapped
BASELINE_LRS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
