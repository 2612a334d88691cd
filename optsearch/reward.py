"""The reward of a rule over the search suite, with successive halving, and the funnel's selection.

On every search task the rule's learning rate is tuned by final validation loss (the same grid walk as
the scoreboard's, one seed) and compared with tuned Adam's: the reward is the inverse geometric mean of
the ratios, so Adam scores 1, a rule twice as good on every task 2, and no task dominates however large
its losses are (``objective="error"`` compares validation errors instead: 1 - accuracy, MSE, bits/char).
Tasks run from the cheapest up; a rule whose ratio on a task is worse than ``cutoff`` stops there (the
ratio counts for the tasks it skipped), and a rule that diverges at every learning rate of a task fails
with that reason. `successive_halving` does the same across a population: every survivor runs the next
task, and the worse half is dropped after each.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2l.optsearch.language import Rule, to_text
from l2l.optsearch.presets import PRESETS
from l2l.optsearch.trainer import SuiteTask
from l2l.optsearch.tuning import LR_GRID, TUNING, Cell, Contender, Runner, metric_noise, walk_grid

CUTOFF = 3.0
REFERENCE = "adam"
CACHE_ENV = "L2L_OPTSEARCH_CACHE"


OBJECTIVES = ("loss", "error")


def validation_error(task: SuiteTask, val_metric: float) -> float:
    """The validation metric as an error, lower is better: 1 - accuracy, or the metric itself."""
    return 1.0 - val_metric if task.higher_is_better else val_metric


class RuleFailed(RuntimeError):
    """The rule diverged at every learning rate of a task."""


@dataclass(frozen=True)
class TaskScore:
    """A rule's tuned result on one task: its lr, final validation loss and ratio to tuned Adam's."""

    task: str
    lr: float
    value: float  # final validation loss, or error with objective "error"
    ratio: float
    runs: int


def tune_loss(
    rule: Rule, task: SuiteTask, lrs: Sequence[float] = LR_GRID, seed: int = 0, objective: str = "loss"
) -> TaskScore | str:
    """The rule tuned on ``task`` by final validation loss (or error); the divergence reason when every lr
    diverged."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    cell = Cell(task.name, "rule")
    runner = Runner(Contender("rule", to_text(rule)), task, cell)
    grid = sorted(lrs)
    start = min(range(len(grid)), key=lambda i: abs(math.log(grid[i] / 1e-3)))
    aim = "loss" if objective == "loss" else "metric"
    noise = metric_noise(task, aim)
    best = walk_grid(lambda i: runner.value(grid[i], None, [seed], objective=aim), len(grid), start, noise=noise)
    out = runner.run(grid[best], None, seed)
    if isinstance(out, str):
        reasons = sorted(r for r in runner.done.values() if isinstance(r, str))
        return f"diverged at every learning rate tried on {task.name} ({cell.runs} runs): {reasons[0]}"
    value = out.val_loss if objective == "loss" else validation_error(task, out.val_metric)
    return TaskScore(task.name, grid[best], value, math.nan, cell.runs)


def reference_key(tasks: Sequence[SuiteTask], lrs: Sequence[float], objective: str) -> str:
    """What tuned Adam's figures depend on, hashed: the tasks as declared, the grid, the reference rule, the
    objective and the tuning walk's version (`TUNING`: older references are not reused)."""
    import hashlib

    key = json.dumps([[repr(t) for t in tasks], list(lrs), REFERENCE, PRESETS[REFERENCE], objective, TUNING])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _cache_path(tasks: Sequence[SuiteTask], lrs: Sequence[float], objective: str) -> Path:
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "l2l" / "optsearch"))
    return root / f"reference-{reference_key(tasks, lrs, objective)}.json"


_REFERENCES: dict[Path, dict[str, float]] = {}


def references(tasks: Sequence[SuiteTask], lrs: Sequence[float] = LR_GRID, objective: str = "loss") -> dict[str, float]:
    """Tuned Adam's final validation loss (or error) per task (computed once, then read from a cache file)."""
    path = _cache_path(tasks, lrs, objective)
    if path in _REFERENCES:
        return _REFERENCES[path]
    if path.exists():
        _REFERENCES[path] = json.loads(path.read_text())
        return _REFERENCES[path]
    from l2l.optsearch.language import parse

    out: dict[str, float] = {}
    for task in tasks:
        score = tune_loss(parse(PRESETS[REFERENCE]), task, lrs, objective=objective)
        if isinstance(score, str):
            raise RuleFailed(f"the reference {REFERENCE} {score}")
        out[task.name] = max(score.value, 1e-6)  # an error of 0 would make every ratio infinite
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)  # atomic: workers computing it at once write the same values
    _REFERENCES[path] = out
    return out


@dataclass
class SuiteScore:
    """A rule's reward over the suite, how far it got, and what that cost."""

    reward: float
    scores: list[TaskScore] = field(default_factory=list)
    stopped_at: str | None = None  # the task where it was worse than the cutoff
    runs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "reward": self.reward,
            "stopped_at": self.stopped_at,
            "runs": self.runs,
            "tasks": {s.task: {"lr": s.lr, "value": s.value, "ratio": s.ratio} for s in self.scores},
        }


def geometric_reward(ratios: Sequence[float]) -> float:
    """1 / the geometric mean of the loss ratios."""
    return math.exp(-statistics.fmean(math.log(r) for r in ratios))


_POOLS: dict[int, Any] = {}


def _pool(workers: int) -> Any:
    """A process pool kept for the life of this process (children after the first pay no start-up)."""
    if workers not in _POOLS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return _POOLS[workers]


def _tune_one(rule: Rule, task: SuiteTask, lrs: Sequence[float], objective: str) -> TaskScore | str:
    import torch

    torch.set_num_threads(1)
    return tune_loss(rule, task, lrs, objective=objective)


def suite_reward(
    rule: Rule,
    tasks: Sequence[SuiteTask],
    refs: dict[str, float],
    *,
    lrs: Sequence[float] = LR_GRID,
    cutoff: float = CUTOFF,
    objective: str = "loss",
    workers: int = 1,
) -> SuiteScore:
    """Tune the rule on each task from the first (cheapest) up; stop at a task where it is worse than
    ``cutoff`` times Adam (its ratio then stands for every task left). Raises `RuleFailed`.

    With ``workers`` > 1 the first task runs here and, when it passes, the others at once over that many
    processes; the outcome is the same as one task after another (the stop is applied in task order),
    only runs past the stop are spent."""
    out = SuiteScore(reward=math.nan)
    ratios: list[float] = []
    pending: dict[str, Any] = {}
    for i, task in enumerate(tasks):
        if task.name in pending:
            score = pending.pop(task.name).result()
        else:
            score = tune_loss(rule, task, lrs, objective=objective)
        if isinstance(score, str):
            raise RuleFailed(score)
        ratio = max(score.value, 1e-6) / refs[task.name]
        out.scores.append(TaskScore(task.name, score.lr, score.value, ratio, score.runs))
        out.runs += score.runs
        ratios.append(ratio)
        if ratio > cutoff and len(ratios) < len(tasks):
            out.stopped_at = task.name
            ratios += [ratio] * (len(tasks) - len(ratios))
            break
        if i == 0 and workers > 1:
            pool = _pool(workers)
            pending = {t.name: pool.submit(_tune_one, rule, t, tuple(lrs), objective) for t in tasks[1:]}
    for future in pending.values():  # past the stop: wait, so the pool is free for the next rule
        future.result()
    out.reward = geometric_reward(ratios)
    return out


def successive_halving(
    rules: Sequence[Rule],
    tasks: Sequence[SuiteTask],
    refs: dict[str, float],
    *,
    lrs: Sequence[float] = LR_GRID,
    objective: str = "loss",
) -> tuple[list[tuple[Rule, float]], int]:
    """Rules ranked by reward over the tasks they reached: after each task the worse half stops.
    Returns [(rule, reward over the tasks run)] best first, and the number of training runs spent."""
    ratios: dict[int, list[float]] = {i: [] for i in range(len(rules))}
    alive = list(range(len(rules)))
    runs = 0
    for n, task in enumerate(tasks):
        for i in alive:
            score = tune_loss(rules[i], task, lrs, objective=objective)
            if isinstance(score, str):
                ratios[i].append(math.inf)
                continue
            runs += score.runs
            ratios[i].append(max(score.value, 1e-6) / refs[task.name])
        alive = [i for i in alive if not math.isinf(ratios[i][-1])]
        if n < len(tasks) - 1:
            alive.sort(key=lambda i: -geometric_reward(ratios[i]))
            alive = alive[: max(1, math.ceil(len(alive) / 2))]
    ranked = sorted(
        ((len(ratios[i]), 0.0 if math.isinf(ratios[i][-1]) else geometric_reward(ratios[i]), i) for i in ratios),
        reverse=True,
    )
    return [(rules[i], reward) for _, reward, i in ranked], runs
