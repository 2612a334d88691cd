"""Early stopping of children by Optuna's pruners, fed by the per-epoch validation curves of real children."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runs.store import ChildRecord
from search_spaces.api import Result

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


class PrunerBridge:
    """One in-memory Optuna study whose trials are the run's children, in child order.

    The driver asks a trial when a child starts, the child reports its validation accuracy after
    each epoch through `reporter` and stops when the pruner says so, and the driver tells the
    trial when the child finishes. On resume the history is replayed from the stored curves, so
    pruning decisions continue as they would have.
    """

    def __init__(self, name: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.name = name
        self.study = optuna.create_study(direction="maximize", pruner=_make(name))
        self.trials: dict[int, Any] = {}

    def reporter(self, number: int) -> Callable[[int, float], bool]:
        """A callback for child ``number``: report (epoch, value), get True when the child should stop."""
        trial = self.study.ask()
        self.trials[number] = trial

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            return bool(trial.should_prune())

        return report

    def finish(self, number: int, result: Result) -> None:
        """Tell the pruner's study how child ``number`` ended."""
        import optuna

        trial = self.trials.pop(number, None)
        if trial is None:
            return
        if result.info.get("pruned_at") is not None:
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
            for epoch, value in enumerate(c.curves.get("val_acc") or []):
                if value is not None:
                    report(epoch, float(value))
            info = (c.metrics.get("info") or {}) if c.metrics else {}
            result = (
                Result(reward=c.reward, info=info)
                if c.status == "done" and c.reward is not None
                else Result.failed(c.error or "failed")
            )
            self.finish(c.number, result)
