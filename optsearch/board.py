"""The scoreboard: every optimizer tuned the same way on every task of a suite, with seeds and intervals.

`run_board` tunes each (optimizer, task) pair with `l2l.optsearch.tuning.tune`, in this process or
spread over worker processes (one pair per job, the slowest tasks first), and returns a JSON-ready
board: the tasks' declarations, the optimizers' rules, one cell per pair, the winner of each task (none
on a tie) and the number of tasks each optimizer won. `performance_profile` gives, for each optimizer, the share of
tasks on which it is within a factor tau of the best (Dolan and Moré), on an error scale where lower
is better (1 - accuracy, MSE, bits per character).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from l2l.optsearch.suite import suite_of
from l2l.optsearch.trainer import SuiteTask
from l2l.optsearch.tuning import LR_GRID, WD_GRID, Cell, Contender, describe, tune

BOARD_VERSION = 1


class BoardInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `run_board`: ``board`` holds the pairs that had finished (``interrupted``: true)."""

    def __init__(self, board: dict[str, Any]) -> None:
        super().__init__("interrupted")
        self.board = board


def _job(
    contender: Contender,
    task: SuiteTask,
    seeds: int,
    lrs: Sequence[float],
    wds: Sequence[float],
    objective: str = "metric",
) -> Cell:
    import torch

    torch.set_num_threads(1)
    try:
        return tune(contender, task, seeds, lrs=lrs, wds=wds, objective=objective)
    except Exception as exc:  # a task or rule that breaks (not diverges): a failed cell, the board goes on
        return Cell(task.name, contender.label, failed=f"error: {type(exc).__name__}: {exc}")


def run_board(
    contenders: Sequence[Contender],
    tasks: Sequence[SuiteTask],
    seeds: int = 5,
    *,
    lrs: Sequence[float] = LR_GRID,
    wds: Sequence[float] = WD_GRID,
    workers: int = 1,
    progress: Callable[[Cell], None] | None = None,
    objective: str = "metric",
) -> dict[str, Any]:
    """Tune and run every contender on every task; ``workers`` > 1 spreads the pairs over processes;
    ``objective`` is what tuning chooses by (`l2l.optsearch.tuning.tune`)."""
    labels = [c.label for c in contenders]
    if len(set(labels)) != len(labels):
        raise ValueError(f"optimizer labels must differ, got {labels}")
    started = time.perf_counter()
    pairs = [(c, t) for t in sorted(tasks, key=lambda t: -t.steps * _weight(t)) for c in contenders]
    cells: list[Cell] = []
    try:
        if workers <= 1:
            for c, t in pairs:
                cells.append(_job(c, t, seeds, lrs, wds, objective))
                if progress:
                    progress(cells[-1])
        else:
            import multiprocessing

            pool = ProcessPoolExecutor(min(workers, len(pairs)), mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = [pool.submit(_job, c, t, seeds, tuple(lrs), tuple(wds), objective) for c, t in pairs]
                for future in as_completed(futures):
                    cells.append(future.result())
                    if progress:
                        progress(cells[-1])
            except BaseException:  # Ctrl-C: the pairs not started never start (those running end with their workers)
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    except KeyboardInterrupt:
        raise BoardInterrupted(
            {**_board(contenders, tasks, cells, seeds, lrs, wds, workers, started), "interrupted": True}
        ) from None
    return _board(contenders, tasks, cells, seeds, lrs, wds, workers, started)


def _board(
    contenders: Sequence[Contender],
    tasks: Sequence[SuiteTask],
    cells: Sequence[Cell],
    seeds: int,
    lrs: Sequence[float],
    wds: Sequence[float],
    workers: int,
    started: float,
) -> dict[str, Any]:
    """The board of the finished ``cells`` (every pair, or those done before an interruption)."""
    labels = [c.label for c in contenders]
    board: dict[str, Any] = {
        "version": BOARD_VERSION,
        "seeds": seeds,
        "lr_grid": list(lrs),
        "wd_grid": list(wds),
        "workers": workers,
        "cpus": os.cpu_count(),
        "seconds": time.perf_counter() - started,
        "optimizers": [describe(c) for c in contenders],
        "tasks": [{**t.describe(), "suite": suite_of(t.name)} for t in tasks],
        "cells": {t.name: {} for t in tasks},
    }
    order = {label: i for i, label in enumerate(labels)}
    for cell in sorted(cells, key=lambda c: order[c.label]):  # in the optimizers' order, however they finished
        board["cells"][cell.task][cell.label] = cell.to_json()
    board["winners"] = {t.name: winner(board, t.name) for t in tasks}
    board["leaders"] = {t.name: leaders(board, t.name) for t in tasks}
    board["wins"] = {label: sum(w == label for w in board["winners"].values()) for label in labels}
    return board


def _weight(task: SuiteTask) -> float:  # a rough cost per step, to start the slowest jobs first
    return {"char-transformer": 20.0, "char-lstm": 8.0, "gru": 2.0}.get(task.model, 1.0)


TIE_TOLERANCE = 1e-6  # relative: means this close are the same result (603/2000 both ways is a tie)


def higher_is_better(board: dict[str, Any], task: str) -> bool:
    return bool(next(t for t in board["tasks"] if t["name"] == task)["higher_is_better"])


def winner(board: dict[str, Any], task: str) -> str | None:
    """The optimizer with the best mean test metric on ``task``; None when every one failed or when the
    best mean is shared (AdamW that chose weight decay 0 ties with Adam: a tie is nobody's win)."""
    best = leaders(board, task)
    return best[0] if len(best) == 1 else None


def leaders(board: dict[str, Any], task: str) -> list[str]:
    """Every optimizer whose mean test metric on ``task`` is the best one (ties within `TIE_TOLERANCE`)."""
    sign = 1.0 if higher_is_better(board, task) else -1.0
    scored = {label: sign * c["test_mean"] for label, c in board["cells"][task].items() if not c["failed"]}
    scored = {label: v for label, v in scored.items() if not math.isnan(v)}
    if not scored:
        return []
    top = max(scored.values())  # equal within float32's rounding: a board's values are read back from torch
    return [label for label, v in scored.items() if math.isclose(v, top, rel_tol=TIE_TOLERANCE, abs_tol=1e-12)]


def error(board: dict[str, Any], task: str, label: str) -> float:
    """The mean test result as an error (lower is better, >= 0): 1 - accuracy, or the metric itself."""
    cell = board["cells"][task].get(label)  # none: a board Ctrl-C stopped before the pair ran
    if cell is None or cell["failed"] or math.isnan(cell["test_mean"]):
        return math.inf
    return 1.0 - cell["test_mean"] if higher_is_better(board, task) else float(cell["test_mean"])


def performance_profile(board: dict[str, Any], taus: Sequence[float]) -> dict[str, list[float]]:
    """For each optimizer, the share of tasks whose error is within a factor tau of the best one's."""
    labels = [o["label"] for o in board["optimizers"]]
    tasks = list(board["cells"])
    ratios: dict[str, list[float]] = {label: [] for label in labels}
    for task in tasks:
        errors = {label: error(board, task, label) for label in labels}
        best = min(errors.values())
        for label in labels:
            if math.isinf(errors[label]):
                ratios[label].append(math.inf)
            else:
                ratios[label].append(errors[label] / best if best > 0 else (1.0 if errors[label] == 0 else math.inf))
    return {label: [sum(r <= tau for r in ratios[label]) / len(tasks) for tau in taus] for label in labels}


def interval(cell: dict[str, Any]) -> float:
    """A cell's 95% half-width; nan where there is none (one seed: null in a board's JSON)."""
    ci = cell.get("test_ci")
    return math.nan if ci is None else float(ci)


def for_json(value: Any) -> Any:
    """``value`` with every float nan as None: strict JSON (JavaScript, jq) has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: for_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [for_json(v) for v in value]
    return value


def interval_text(cell: dict[str, Any], metric: str, digits: int = 4) -> str:
    """``± half-width``, or where Student's t interval runs past what the metric can take (two seeds of an
    accuracy near 0 or 1), the interval clipped to that range, ``[low, high]``; nothing for one seed."""
    from l2l.optsearch.trainer import METRICS

    half, mean = interval(cell), float(cell["test_mean"])
    if math.isnan(half):
        return ""
    bounds = METRICS[metric] if metric in METRICS else None
    if bounds is None or (bounds.low <= mean - half and mean + half <= bounds.high):
        return f"± {half:.{digits}f}"
    return f"[{max(bounds.low, mean - half):.{digits}f}, {min(bounds.high, mean + half):.{digits}f}]"


def intervals_apart(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two cells' 95% intervals do not overlap."""
    if a["failed"] or b["failed"] or math.isnan(interval(a)) or math.isnan(interval(b)):
        return False
    return abs(a["test_mean"] - b["test_mean"]) > a["test_ci"] + b["test_ci"]
