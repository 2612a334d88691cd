"""Early stopping of children by Optuna's pruners, fed by the per-epoch validation curves of real children."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from l2l.runs.store import ChildRecord
from l2l.search_spaces.api import Result

PRUNERS = ("median", "halving", "hyperband")


class PrunerError(ValueError):
    """An unknown pruner name."""


def _make(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    raise PrunerError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")


def pruning_curve(curves: Mapping[str, Sequence[float | None]], pruned: bool) -> list[float | None]:
    """The values a child reported to the pruner, read back from its curves: validation accuracy, or
    minus the validation bits per character of a language model (higher is better for both). A
    child reports after every epoch but its last, unless it was pruned there."""
    if curves.get("val_acc"):
        values = list(curves["val_acc"])
    else:
        values = [None if v is None else -v for v in curves.get("val_bpc") or []]
    return values if pruned else values[:-1]


class PrunerBridge:
    """One in-memory Optuna study whose trials are the run's children, in child order.

    The driver asks a trial when a child starts, the child reports its validation accuracy after
    each epoch through `reporter` and stops when the pruner says so, and the driver tells the
    trial when the child finishes. On resume the history is replayed from the stored curves, so
    pruning decisions continue as they would have.

    A child on another process (the Ray executor) reports to the copy of the study it was handed,
    so it decides on the history as the driver had it at hand-over. Its own reports do not come
    back that way: `finish` reports its curve to the driver's study, so the children handed over
    later see it.
    """

    def __init__(self, name: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = name
        # a fixed name: Hyperband puts trials in brackets by a hash of the study's name, and the
        # default name is random, which would make pruning (and resumed runs) differ run to run
        self.study = optuna.create_study(study_name=f"l2l-{name}", direction="maximize", pruner=_make(name))
        self.trials: dict[int, Any] = {}
        self.reported: dict[int, set[int]] = {}  # epochs each child reported in this process

    def reporter(self, number: int) -> Callable[[int, float], bool]:
        """A callback for child ``number``: report (epoch, value), get True when the child should stop."""
        trial = self.study.ask()
        self.trials[number] = trial
        seen = self.reported.setdefault(number, set())

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            seen.add(epoch)
            return bool(trial.should_prune())

        return report

    def finish(self, number: int, result: Result) -> None:
        """Tell the pruner's study how child ``number`` ended."""
        import optuna

        trial = self.trials.pop(number, None)
        seen = self.reported.pop(number, set())
        if trial is None:
            return
        pruned = result.info.get("pruned_at") is not None
        for epoch, value in enumerate(pruning_curve(result.curves, pruned)):
            if epoch not in seen and value is not None:  # reported on a worker, not here
                trial.report(float(value), epoch)
        if pruned:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif result.ok:
            self.study.tell(trial, result.reward)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def replay(self, children: Sequence[ChildRecord]) -> None:
        """Rebuild the history from finished children (on resume)."""
        for c in children:
            if c.status not in ("done", "failed"):
                continue
            report = self.reporter(c.number)
            info = (c.metrics.get("info") or {}) if c.metrics else {}
            for epoch, value in enumerate(pruning_curve(c.curves, info.get("pruned_at") is not None)):
                if value is not None:
                    report(epoch, float(value))
            result = (
                Result(reward=c.reward, info=info)
                if c.status == "done" and c.reward is not None
                else Result.failed(c.error or "failed")
            )
            self.finish(c.number, result)
