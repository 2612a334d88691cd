"""The funnel after a search: the best rules re-run on the search tasks with longer budgets and more seeds,
the winner chosen there, and only then the held-out scoreboard.

The winner is the rule with the best geometric mean, over the search tasks, of its mean final validation
loss (or error) relative to tuned Adam's at the same longer budget (the reward's measure, over several seeds).
Held-out tasks play no part in it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from typing import Any

from l2l.optsearch.board import run_board
from l2l.optsearch.presets import PRESETS
from l2l.optsearch.reward import REFERENCE, geometric_reward, validation_error
from l2l.optsearch.trainer import SuiteTask
from l2l.optsearch.tuning import LR_GRID, Contender

BASELINES = ("sgdm", "adam", "adamw", "rmsprop", "lion", "powersign", "addsign")


def longer(tasks: Sequence[SuiteTask], scale: float) -> list[SuiteTask]:
    """The tasks with ``scale`` times their steps."""
    return [dataclasses.replace(t, steps=max(t.evals, round(t.steps * scale))) for t in tasks]


def funnel(
    candidates: Sequence[Contender],
    tasks: Sequence[SuiteTask],
    *,
    seeds: int = 3,
    scale: float = 2.0,
    lrs: Sequence[float] = LR_GRID,
    workers: int = 1,
    objective: str = "loss",
) -> dict[str, Any]:
    """Re-run ``candidates`` and tuned Adam on ``tasks`` at ``scale`` times their steps with ``seeds``
    seeds; return the board, each candidate's score (1 / geometric mean loss ratio to Adam) and the winner."""
    reference = Contender(REFERENCE, PRESETS[REFERENCE])
    tasks = longer(tasks, scale)
    # tuned by what it is scored by: the validation loss, or the metric (ties by loss) for the error
    tuning = "loss" if objective == "loss" else "metric"
    board = run_board([*candidates, reference], tasks, seeds, lrs=lrs, workers=workers, objective=tuning)

    def value(task: SuiteTask, cell: dict[str, Any]) -> float:
        if objective == "loss":
            return statistics.fmean(cell["val_loss"])
        return max(validation_error(task, statistics.fmean(cell["val"])), 1e-6)

    scores: dict[str, float] = {}
    for c in candidates:
        ratios = []
        for task in tasks:
            mine, ref = board["cells"][task.name][c.label], board["cells"][task.name][REFERENCE]
            if mine["failed"] or ref["failed"]:
                ratios.append(math.inf)
            else:
                ratios.append(value(task, mine) / value(task, ref))
        scores[c.label] = 0.0 if any(math.isinf(r) for r in ratios) else geometric_reward(ratios)
    winner = max(scores, key=lambda label: scores[label]) if scores else None
    return {"board": board, "scores": scores, "winner": winner, "scale": scale, "seeds": seeds}
