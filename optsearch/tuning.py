"""Fair tuning: every optimizer, found or hand-made, gets the same learning-rate grid and the same procedure.

On each task the learning rate is chosen on a grid of half-decade steps (1e-5 to 10 by default) by the
validation metric of the tuning seed(s), walking the grid from 1e-3 in the better direction until two points
in a row are no better (the same walk for every optimizer, so no one gets more trials by design; rates that
diverge before any has trained are no misses, so a rule that trains only at small rates is found there).
Two points whose accuracies differ by less than one standard error of a validation accuracy
(``sqrt(p (1 - p) / n)`` over the split's n examples) are compared by their validation loss instead:
accuracies at chance, as while a rule's steps are too small to train anything, differ by an example or two
and would otherwise end the walk before the rates where the rule trains. A rule with decoupled weight decay
then has its weight decay chosen on a grid at that rate.
When the chosen rate is the grid's first or last point the result says so (``lr_at_edge``): the grid
was too narrow for it. The chosen setting is then trained with every seed, and the test metric is
reported as a mean with a 95% confidence interval (Student's t over seeds).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from l2l.optsearch.compiler import compile_rule
from l2l.optsearch.language import Rule, RuleError, parse, to_formula
from l2l.optsearch.trainer import Diverged, SuiteTask, TaskRun, train_run

LR_GRID: tuple[float, ...] = tuple(float(f"{10 ** (k / 2):.3g}") for k in range(-10, 3))  # 1e-5, 3.16e-5, ..., 10
WD_GRID: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0, 10.0)
START_LR = 1e-3
PATIENCE = 2
TUNING = 2  # the walk's version, in cache keys of tuned results: 2 compares accuracies within their noise by loss


@dataclass(frozen=True)
class Contender:
    """An optimizer on the scoreboard: a label and its rule (a preset, a found rule, any rule text)."""

    label: str
    rule: str

    def __post_init__(self) -> None:  # before any training: a preset's name given as its rule failed after it
        from l2l.optsearch.presets import PRESETS

        try:
            parse(self.rule)
        except RuleError as exc:
            hint = f" (the preset {self.rule!r} is PRESETS[{self.rule!r}])" if self.rule in PRESETS else ""
            raise RuleError(f"optimizer {self.label!r}: {exc}{hint}") from None

    @property
    def parsed(self) -> Rule:
        return parse(self.rule)

    @property
    def has_weight_decay(self) -> bool:
        return self.parsed.weight_decay

    def factory(self, task: SuiteTask) -> Callable[..., Any]:
        """``(params, lr) -> optimizer`` with the task's horizon for decay schedules."""
        return compile_rule(self.parsed, total_steps=task.steps)


def score(task: SuiteTask, run: TaskRun | None) -> float:
    """Validation metric oriented so that larger is better; a diverged run is -inf."""
    if run is None:
        return -math.inf
    return run.val_metric if task.higher_is_better else -run.val_metric


def confidence(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% confidence interval by Student's t); the half-width is nan for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    from scipy.stats import t

    return mean, float(t.ppf(0.975, len(values) - 1)) * statistics.stdev(values) / math.sqrt(len(values))


@dataclass
class Cell:
    """One optimizer tuned and run on one task: the setting chosen, what each grid point scored, the seeds."""

    task: str
    label: str
    lr: float | None = None
    weight_decay: float | None = None
    lr_at_edge: bool = False
    wd_at_edge: bool = False
    val_by_lr: dict[str, float | None] = field(default_factory=dict)  # None: diverged
    val_by_wd: dict[str, float | None] = field(default_factory=dict)
    test: list[float] = field(default_factory=list)  # per seed that finished
    val: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    diverged_seeds: dict[str, str] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)  # means over seeds
    runs: int = 0
    seconds: float = 0.0
    failed: str | None = None

    @property
    def test_mean(self) -> float:
        return confidence(self.test)[0] if self.test else math.nan

    @property
    def test_ci(self) -> float:
        return confidence(self.test)[1] if self.test else math.nan

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["test_mean"], out["test_ci"] = self.test_mean, self.test_ci
        return out


class Runner:
    """Runs of one rule on one task, counted and memoised by (lr, weight decay, seed)."""

    def __init__(self, contender: Contender, task: SuiteTask, cell: Cell) -> None:
        self.contender, self.task, self.cell = contender, task, cell
        self.factory = contender.factory(task)
        self.done: dict[tuple[float, float | None, int], TaskRun | str] = {}

    def run(self, lr: float, wd: float | None, seed: int) -> TaskRun | str:
        key = (lr, wd, seed)
        if key not in self.done:
            self.cell.runs += 1
            try:
                out: TaskRun | str = train_run(self.task, self.factory, lr, seed, weight_decay=wd)
                self.cell.seconds += out.seconds  # type: ignore[union-attr]
            except Diverged as exc:
                out = str(exc)
            self.done[key] = out
        return self.done[key]

    def value(self, lr: float, wd: float | None, seeds: Sequence[int], objective: str = "metric") -> Score:
        """Mean over ``seeds`` of the validation metric (``objective="metric"``, oriented larger-is-better),
        then minus the mean validation loss, which breaks the metric's ties; with ``"loss"`` minus the loss
        alone. (-inf, -inf) when a run diverged."""
        if objective not in ("metric", "loss"):
            raise ValueError(f"unknown tuning objective {objective!r}; known: metric, loss")
        runs = [self.run(lr, wd, s) for s in seeds]
        if any(isinstance(r, str) for r in runs):
            return DIVERGED
        loss = -statistics.fmean(r.val_loss for r in runs)  # type: ignore[union-attr]
        if objective == "loss":
            return loss, loss
        return statistics.fmean(score(self.task, r) for r in runs), loss  # type: ignore[arg-type]


Score = tuple[float, float]  # what a grid point is compared by, larger is better: (objective, tie-break)
DIVERGED: Score = (-math.inf, -math.inf)
Noise = Callable[[float, float], float]  # two objective values -> the difference below which they tie


def exact(a: float, b: float) -> float:
    """No tolerance: only equal objectives tie."""
    return 0.0


def metric_noise(task: SuiteTask, objective: str = "metric") -> Noise:
    """What tuning by ``objective`` treats as a tie: for the validation accuracy, one standard error,
    ``sqrt(p (1 - p) / n)`` at the two values' mean; the loss, MSE and bits per character are averages of
    smooth terms: `exact`."""
    if objective != "metric" or task.metric != "accuracy":
        return exact
    n = max(1, len(task.data().val))

    def standard_error(a: float, b: float) -> float:
        p = min(max((abs(a) + abs(b)) / 2, 0.0), 1.0)
        return math.sqrt(p * (1.0 - p) / n)

    return standard_error


def better(a: Score, b: Score, noise: Noise = exact) -> bool:
    """Whether ``a`` beats ``b``: by the objective, or where the two are within ``noise`` of each other (and
    neither diverged), by the tie-break."""
    if DIVERGED in (a, b) or abs(a[0] - b[0]) > noise(a[0], b[0]):
        return a > b
    return a[1] > b[1]


def walk_grid(value: Callable[[int], Score], n: int, start: int, patience: int = PATIENCE, noise: Noise = exact) -> int:
    """Index of the best grid point found by walking from ``start`` in the better direction; stops after
    ``patience`` points in a row that are no better than the best. ``value(i)`` is larger-is-better; diverged
    points (`DIVERGED`) do not count as misses while no point has trained yet: a rule that diverges at the
    larger rates is walked down to the grid's smallest before it is called diverged everywhere. Points are
    compared by `better` with ``noise``."""
    scores: dict[int, Score] = {}

    def at(i: int) -> Score:
        if i not in scores:
            scores[i] = value(i)
        return scores[i]

    best = start
    at(start)  # a grid of one point is tried too
    up = start + 1 < n and better(at(start + 1), at(start), noise)
    step = 1 if up else -1  # a rate that diverged scores -inf: the walk turns to smaller ones
    i, misses = start, 0
    while 0 <= i + step < n and misses < patience:
        i += step
        if better(at(i), at(best), noise):
            best, misses = i, 0
        elif at(best) > DIVERGED:
            misses += 1
    return best


def tune(
    contender: Contender,
    task: SuiteTask,
    seeds: int = 5,
    *,
    lrs: Sequence[float] = LR_GRID,
    wds: Sequence[float] = WD_GRID,
    tune_seeds: int = 1,
    objective: str = "metric",
) -> Cell:
    """Choose the learning rate (and weight decay) on validation, by the validation metric (ties by loss) or
    with ``objective="loss"`` by the validation loss, then run every seed at that setting."""
    cell = Cell(task.name, contender.label)
    runner = Runner(contender, task, cell)
    grid = sorted(lrs)
    tuning = list(range(min(tune_seeds, seeds)))
    wd0 = 0.01 if contender.has_weight_decay else None
    start = min(range(len(grid)), key=lambda i: abs(math.log(grid[i] / START_LR)))
    noise = metric_noise(task, objective)
    best = walk_grid(lambda i: runner.value(grid[i], wd0, tuning, objective), len(grid), start, noise=noise)
    diverged = runner.value(grid[best], wd0, tuning, objective) == DIVERGED
    for (lr, wd, _), run in sorted(runner.done.items()):
        if wd == wd0:
            cell.val_by_lr[f"{lr:g}"] = None if isinstance(run, str) else run.val_metric
    if diverged:
        reasons = sorted({r for r in runner.done.values() if isinstance(r, str)})
        tried = sorted(float(lr) for lr in cell.val_by_lr)
        span = f"{tried[0]:g}" if len(tried) == 1 else f"{tried[0]:g} to {tried[-1]:g}"
        cell.failed = f"diverged at each of the {len(tried)} learning rates tried ({span}): {reasons[0]}"
        return cell
    lr, wd = grid[best], wd0
    cell.lr_at_edge = best in (0, len(grid) - 1)
    if contender.has_weight_decay:
        values = {w: runner.value(lr, w, tuning, objective) for w in wds}
        wd = wds[0]
        for w in wds[1:]:
            if better(values[w], values[wd], noise):
                wd = w
        cell.wd_at_edge = wd == max(wds) and wd > 0
        for w in wds:
            run = runner.run(lr, w, tuning[0])
            cell.val_by_wd[f"{w:g}"] = None if isinstance(run, str) else run.val_metric
    cell.lr, cell.weight_decay = lr, wd
    finished: list[TaskRun] = []
    for seed in range(seeds):
        run = runner.run(lr, wd, seed)
        if isinstance(run, str):
            cell.diverged_seeds[str(seed)] = run
            continue
        finished.append(run)
        cell.test.append(run.test_metric)
        cell.val.append(run.val_metric)
        cell.val_loss.append(run.val_loss)
    if not finished:
        cell.failed = f"diverged on every seed at the chosen lr {lr:g}"
        return cell
    for key, first in finished[0].curves.items():
        cell.curves[key] = [statistics.fmean(r.curves[key][i] for r in finished) for i in range(len(first))]
    return cell


def describe(contender: Contender) -> dict[str, Any]:
    """JSON-ready label, rule text and formula."""
    return {"label": contender.label, "rule": contender.rule, "formula": to_formula(contender.parsed)}
