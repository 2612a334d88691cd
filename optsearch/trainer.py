"""One training run of a suite task with one optimizer at one learning rate and one seed.

A task is data (`SuiteTask`): a problem (fixed splits), a model, a loss, a metric, a number of steps and
a batch size. The seed draws the initial weights, the order of the minibatches and the random draws of
the update rule (noise, drop); the same seed gives the same run. A run that produces a non-finite loss,
or a loss a thousand times its first, raises `Diverged` with the step and the value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from l2l.nas.data import Split
from l2l.nas.train import ChildDiverged, LossGuard
from l2l.optsearch.models import MODELS, build_model, parameter_count
from l2l.optsearch.problems import Problem, load_problem, problem_names

OptimizerFactory = Any  # (params, lr) -> torch.optim.Optimizer
BLOWUP = 1e3


class Diverged(ChildDiverged):
    """The loss became NaN or inf, or grew a thousand-fold, during a run."""


@dataclass(frozen=True)
class Metric:
    """What a task reports: its name, direction, whether it is an accuracy (error = 1 - value), and the
    range its values can take (an interval over seeds is shown within it)."""

    name: str
    higher_is_better: bool
    low: float = 0.0
    high: float = math.inf


METRICS = {
    "accuracy": Metric("accuracy", True, 0.0, 1.0),
    "mse": Metric("mse", False),
    "bpc": Metric("bpc", False),
}
LOSSES = ("cross_entropy", "mse")
METRIC_LOSS = {"accuracy": "cross_entropy", "mse": "mse", "bpc": "cross_entropy"}  # the loss each metric reads


@dataclass(frozen=True)
class SuiteTask:
    """A small fixed training problem for comparing optimizers, declared as data.

    ``problem`` names the fixed splits (`l2l.optsearch.problems`), ``model`` a factory
    (`l2l.optsearch.models`, or ``"package.module:function"``) with ``options``; the loss trains, the
    metric is reported on validation (for choosing settings) and test (for the scoreboard).
    """

    name: str
    problem: str
    model: str
    loss: str
    metric: str
    steps: int
    batch_size: int
    options: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs; a dict is taken and made pairs
    kind: str = ""  # what the task stands for: "convex", "deep plain MLP", ...
    evals: int = 5  # validation points on the curve (the last is the result)
    seed: int = 0  # offsets every run's seeds: two tasks on one problem see different draws

    def __post_init__(self) -> None:
        options = list(self.options.items()) if isinstance(self.options, dict) else self.options  # a dict too
        if not isinstance(options, list | tuple) or not all(
            isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str) for pair in options
        ):
            raise ValueError(
                f"task {self.name!r}: options must be (name, value) pairs or a dict of them, got {self.options!r}"
            )
        object.__setattr__(self, "options", tuple((str(k), v) for k, v in options))
        for key in ("name", "problem", "model", "loss", "metric", "kind"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"task {self.name!r}: {key} must be text, got {getattr(self, key)!r}")
        for key in ("steps", "batch_size", "evals", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"task {self.name!r}: {key} must be a whole number, got {value!r}")
        if self.problem not in problem_names():  # named when the plugin loads, not when its task first runs
            known = ", ".join(problem_names())
            raise ValueError(f"task {self.name!r}: unknown problem {self.problem!r}; known: {known}")
        if self.model not in MODELS and ":" not in self.model:
            known = f"{', '.join(MODELS)} or 'package.module:function'"
            raise ValueError(f"task {self.name!r}: unknown model {self.model!r}; known: {known}")
        if self.loss not in LOSSES:
            raise ValueError(f"task {self.name!r}: unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.metric not in METRICS:
            raise ValueError(f"task {self.name!r}: unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        needs = METRIC_LOSS[self.metric]  # mse and bits per character are the loss itself, reported
        if self.loss != needs:
            raise ValueError(
                f"task {self.name!r}: metric {self.metric!r} is measured with loss {needs!r}, not {self.loss!r}"
            )
        if self.steps < 1 or self.batch_size < 1 or not 1 <= self.evals <= self.steps:
            raise ValueError(f"task {self.name!r} needs steps, batch_size >= 1 and 1 <= evals <= steps")

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    def data(self) -> Problem:
        """The task's splits (built once per process)."""
        return load_problem(self.problem)

    def build(self, seed: int) -> nn.Module:
        """The model with the initial weights of ``seed``."""
        p = self.data()
        return build_model(self.model, p.n_in, p.n_out, dict(self.options), self.run_seed(seed))

    def run_seed(self, seed: int) -> int:
        """The seed of initial weights and batch order of run ``seed`` of this task."""
        return 1000 * self.seed + seed

    def describe(self) -> dict[str, Any]:
        """JSON-ready declaration, with the split sizes and the parameter count."""
        p = self.data()
        return {
            "name": self.name,
            "kind": self.kind,
            "problem": self.problem,
            "model": self.model,
            "options": dict(self.options),
            "loss": self.loss,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "splits": {"train": len(p.train), "val": len(p.val), "test": len(p.test)},
            "params": parameter_count(self.build(0)),
        }


@dataclass
class TaskRun:
    """The end of one run: validation and test loss and metric, and its curve."""

    val_loss: float
    val_metric: float
    test_loss: float
    test_metric: float
    curves: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


def task_loss(task: SuiteTask, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The task's training loss of the model's output ``out`` against targets ``y``."""
    if task.loss == "mse":
        return nn.functional.mse_loss(out, y)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate_split(task: SuiteTask, model: nn.Module, split: Split, batch: int = 512) -> tuple[float, float]:
    """(mean loss, metric) of ``model`` on ``split``."""
    model.eval()
    loss_sum, n, correct, scored = 0.0, 0, 0, 0
    for start in range(0, len(split), batch):
        x, y = split.x[start : start + batch], split.y[start : start + batch]
        out = model(x)
        k = len(y)
        loss = float(task_loss(task, out, y))
        loss_sum += loss * k
        if task.metric == "accuracy":  # counted: 603 of 2000 is 0.3015 whichever 603 they were
            hits = out.argmax(-1) == y
            correct, scored = correct + int(hits.sum()), scored + hits.numel()
        n += k
    model.train()
    loss = loss_sum / n
    if task.metric == "accuracy":
        return loss, correct / scored
    return loss, loss / math.log(2) if task.metric == "bpc" else loss


def _batches(n: int, batch: int, steps: int, gen: torch.Generator) -> Iterable[torch.Tensor]:
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos : pos + batch]
        pos += batch


def train_run(
    task: SuiteTask, factory: OptimizerFactory, lr: float, seed: int, *, weight_decay: float | None = None
) -> TaskRun:
    """Train ``task``'s model for ``task.steps`` steps with ``factory(params, lr)``; raise `Diverged`."""
    data = task.data()
    run_seed = task.run_seed(seed)
    model = task.build(seed)
    model.train()
    optimizer = factory(model.parameters(), lr)
    if weight_decay is not None:
        for group in optimizer.param_groups:
            group["weight_decay"] = weight_decay
    gen = torch.Generator().manual_seed(run_seed + 500)
    every = max(1, task.steps // task.evals)
    curves: dict[str, list[float]] = {"step": [], "train_loss": [], "val_loss": [], "val_metric": []}
    guard = LossGuard(BLOWUP, Diverged)
    loss_sum, count = 0.0, 0
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run_seed + 1)  # noise and drop() in rules, dropout layers: repeatable
        for step, idx in enumerate(_batches(len(data.train), task.batch_size, task.steps, gen), start=1):
            loss = task_loss(task, model(data.train.x[idx]), data.train.y[idx])
            value = loss.item()
            guard.check(value, f"step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, count = loss_sum + value, count + 1
            if step % every == 0 or step == task.steps:
                val_loss, val_metric = evaluate_split(task, model, data.val)
                if not math.isfinite(val_loss):
                    raise Diverged(f"validation loss became {val_loss} at step {step}")
                curves["step"].append(float(step))
                curves["train_loss"].append(loss_sum / count)
                curves["val_loss"].append(val_loss)
                curves["val_metric"].append(val_metric)
                loss_sum, count = 0.0, 0
    test_loss, test_metric = evaluate_split(task, model, data.test)
    return TaskRun(
        curves["val_loss"][-1],
        curves["val_metric"][-1],
        test_loss,
        test_metric,
        curves,
        time.perf_counter() - started,
    )
