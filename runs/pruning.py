"""Early stopping of children by Optuna's pruners, fed by the per-epoch validation curves of real children."""

from __future__ import annotations

import binascii
import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from l2l.runs.store import ChildRecord
from l2l.search_spaces.api import Result

PRUNERS = ("median", "halving", "hyperband")


class PrunerError(ValueError):
    """An unknown pruner name."""


MEDIAN_STARTUP, MEDIAN_WARMUP = 5, 1  # the median pruner's n_startup_trials and n_warmup_steps
HALVING_FACTOR, HYPERBAND_FACTOR = 4, 3  # Optuna's default reduction factors


def _median(values: Sequence[float]) -> float:
    """numpy's median of sorted ``values``, bit for bit, from their middle one or two (nan when empty)."""
    if not values:
        return math.nan
    mid = (len(values) - 1) / 2
    return float(np.percentile(values[math.floor(mid) : math.ceil(mid) + 1], 50))


def _make(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP, n_warmup_steps=MEDIAN_WARMUP)
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


@dataclass(frozen=True)
class MedianSnapshot:
    """The median pruner's rule as the driver's study had it at a hand-over, in a size that does not grow
    with the run: whether enough children have finished, and the median of the finished children's
    values at each epoch. `MedianSnapshot.prune` gives the verdicts Optuna's `MedianPruner` would."""

    started: bool
    medians: tuple[float, ...]  # by epoch; nan where no finished child reported that epoch

    def prune(self, values: Mapping[int, float]) -> bool:
        """Optuna's verdict (`PercentilePruner.prune` at 50, interval 1) for a child that reported ``values``."""
        if not self.started or not values:
            return False
        step = max(values)
        if step < MEDIAN_WARMUP or max((s for s in values if s != step), default=-1) >= step:
            return False
        reported = [v for v in values.values() if not math.isnan(v)]
        if not reported:
            return True
        median = self.medians[step] if step < len(self.medians) else math.nan
        return not math.isnan(median) and max(reported) < median


class ThresholdReporter:
    """A child's report callback on a worker of another process: decides from a `MedianSnapshot`, so what
    travels with each child is a few numbers, not the study."""

    def __init__(self, snapshot: MedianSnapshot) -> None:
        self.snapshot = snapshot
        self.values: dict[int, float] = {}

    def __call__(self, epoch: int, value: float) -> bool:
        self.values.setdefault(int(epoch), float(value))  # Optuna keeps the first value of a step
        return self.snapshot.prune(self.values)


@dataclass(frozen=True)
class RungSnapshot:
    """Successive halving's rule for one child as the driver's study had it at a hand-over (Optuna's
    `SuccessiveHalvingPruner`, alone or as the child's Hyperband bracket), in a size that does not grow with
    the run: the step of each rung and, per rung, the lowest value promoted (minus infinity where no rival
    reached that rung yet). `RungSnapshot.prune` gives the verdicts Optuna would."""

    steps: tuple[int, ...]  # rung r is decided at the first report at or after steps[r]; empty: never prune
    thresholds: tuple[float, ...]  # by rung: promoted when the value is at least this

    def climb(self, values: Mapping[int, float], rung: int) -> tuple[int, list[tuple[int, float]], bool]:
        """Optuna's `SuccessiveHalvingPruner.prune` from ``rung`` on: (the next rung, the rungs completed now
        with their values, prune)."""
        done: list[tuple[int, float]] = []
        if not values:
            return rung, done, False
        step = max(values)
        value = values[step]
        while rung < len(self.steps) and step >= self.steps[rung]:
            if math.isnan(value):
                return rung, done, True
            done.append((rung, value))
            threshold = self.thresholds[rung] if rung < len(self.thresholds) else -math.inf
            if value < threshold:
                return rung, done, True
            rung += 1
        return rung, done, False


class RungReporter:
    """A child's report callback on a worker of another process for halving and Hyperband: decides from a
    `RungSnapshot`, so what travels with each child is a few numbers, not the study."""

    def __init__(self, snapshot: RungSnapshot) -> None:
        self.snapshot = snapshot
        self.values: dict[int, float] = {}
        self.rung = 0

    def __call__(self, epoch: int, value: float) -> bool:
        self.values.setdefault(int(epoch), float(value))  # Optuna keeps the first value of a step
        self.rung, _, prune = self.snapshot.climb(self.values, self.rung)
        return prune


class _Reporter:
    """Child ``number``'s report callback. In the driver's process it reports to the child's trial;
    pickled for a worker (the Ray executor) it becomes a `ThresholdReporter` (median) or a `RungReporter`
    (halving, Hyperband) of the pruner's state at hand-over: a constant-size value, never the study."""

    def __init__(self, bridge: PrunerBridge, number: int, trial: Any, seen: dict[int, float]) -> None:
        self.bridge, self.number, self.trial, self.seen = bridge, number, trial, seen

    def __call__(self, epoch: int, value: float) -> bool:
        self.trial.report(value, epoch)
        self.seen.setdefault(epoch, float(value))
        return bool(self.trial.should_prune())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.bridge.name == "median":
            return ThresholdReporter, (self.bridge.snapshot(),)
        return RungReporter, (self.bridge.rung_snapshot(self.number),)


class PrunerBridge:
    """One in-memory Optuna study whose trials are the run's children, in child order.

    The driver asks a trial when a child starts, the child reports its validation accuracy after
    each epoch through `reporter` and stops when the pruner says so, and the driver tells the
    trial when the child finishes. On resume the history is replayed from the stored curves, so
    pruning decisions continue as they would have.

    A child on another process (the Ray executor) decides on the history as the driver had it at
    hand-over: with the median pruner a `MedianSnapshot` (a threshold per epoch), with halving and
    Hyperband a `RungSnapshot` (a threshold per rung of the child's bracket): the same verdicts, a few
    hundred bytes however long the run. Its own reports do not come back that way: `finish` reports its
    curve to the driver's study and its rung values to the bridge's tables, so the children handed over
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
        self.reported: dict[int, dict[int, float]] = {}  # (epoch: value) each child reported, here or on a worker
        self._finished = 0  # children told as complete
        self._finished_values: list[list[float]] = []  # by epoch: the complete children's values, sorted
        # halving and Hyperband: the rung values of every child by (bracket, rung), sorted; the largest step
        # a complete child reported (Optuna sizes its rungs from it once); each child's (bracket, steps)
        self._rung_values: dict[tuple[int, int], list[float]] = {}
        self._last_complete_step: int | None = None
        self._ladder: tuple[int, ...] | None = None  # halving: rung steps; Hyperband: trial budget by bracket
        self._rules: dict[int, tuple[int, tuple[int, ...]]] = {}

    def reporter(self, number: int) -> Callable[[int, float], bool]:
        """A callback for child ``number``: report (epoch, value), get True when the child should stop."""
        trial = self.study.ask()
        self.trials[number] = trial
        if self.name != "median":
            self._rules[number] = self._rule(trial.number)
        return _Reporter(self, number, trial, self.reported.setdefault(number, {}))

    def _rule(self, trial_number: int) -> tuple[int, tuple[int, ...]]:
        """(bracket, rung steps) of a trial as Optuna decides them now: no steps until a child completed."""
        if self._ladder is None and self._last_complete_step is not None:
            if self.name == "halving":  # min_resource "auto": a hundredth of the longest complete curve
                low = max(self._last_complete_step // 100, 1)
                self._ladder = tuple(low * HALVING_FACTOR**r for r in range(64))
            else:  # Hyperband, min_resource 1, max_resource "auto"
                n = math.floor(math.log(self._last_complete_step + 1, HYPERBAND_FACTOR)) + 1
                self._ladder = tuple(
                    math.ceil(n * HYPERBAND_FACTOR ** (n - 1 - b) / (n - b)) for b in range(n)
                )  # Optuna's trial allocation budget of each bracket
        if self._ladder is None:
            return 0, ()
        if self.name == "halving":
            return 0, self._ladder
        left = binascii.crc32(f"{self.study.study_name}_{trial_number}".encode()) % sum(self._ladder)
        bracket = 0
        while left >= self._ladder[bracket]:
            left -= self._ladder[bracket]
            bracket += 1
        return bracket, tuple(HYPERBAND_FACTOR ** (bracket + r) for r in range(64))

    def rung_snapshot(self, number: int) -> RungSnapshot:
        """Child ``number``'s halving rule now: its rung steps and each rung's promotion threshold."""
        bracket, steps = self._rules.get(number, (0, ()))
        thresholds = []
        for rung in range(len(steps)):
            rivals = self._rung_values.get((bracket, rung))
            if not rivals:
                break
            # promoted when at least the k+1-th largest rival, k = len(competing) // factor - 1 (at least 0)
            factor = HALVING_FACTOR if self.name == "halving" else HYPERBAND_FACTOR
            k = max((len(rivals) + 1) // factor - 1, 0)
            thresholds.append(rivals[len(rivals) - 1 - k])
        # rungs past the last one any rival reached promote everything: only those before travel
        return RungSnapshot(steps[: len(thresholds) + 1] if thresholds else steps[:1], tuple(thresholds))

    def snapshot(self) -> MedianSnapshot:
        """The median pruner's thresholds now: kept up to date as children finish, O(epochs) to read."""
        medians = tuple(_median(values) for values in self._finished_values)
        return MedianSnapshot(self._finished >= MEDIAN_STARTUP, medians)

    def _note_finished(self, values: Mapping[int, float]) -> None:
        """A child told as complete: its values join the sorted values of each epoch (for `snapshot`)."""
        self._finished += 1
        for step, value in values.items():
            while len(self._finished_values) <= step:
                self._finished_values.append([])
            if not math.isnan(value):
                bisect.insort(self._finished_values[step], value)

    def _note_rungs(self, number: int, seen: Mapping[int, float], complete: bool) -> None:
        """The rungs child ``number`` completed (Optuna records a value at a rung whatever the verdict) join
        its bracket's tables, replayed report by report as its pruner saw them."""
        bracket, steps = self._rules.pop(number, (0, ()))
        snapshot, rung, values = RungSnapshot(steps, ()), 0, {}
        for epoch in sorted(seen):
            values[epoch] = seen[epoch]
            rung, done, _ = snapshot.climb(values, rung)
            for r, value in done:
                bisect.insort(self._rung_values.setdefault((bracket, r), []), value)
        if complete and seen:
            self._last_complete_step = max(self._last_complete_step or 0, max(seen))

    def finish(self, number: int, result: Result) -> None:
        """Tell the pruner's study how child ``number`` ended."""
        import optuna

        trial = self.trials.pop(number, None)
        seen = self.reported.pop(number, {})
        if trial is None:
            return
        pruned = result.info.get("pruned_at") is not None
        for epoch, value in enumerate(pruning_curve(result.curves, pruned)):
            if epoch not in seen and value is not None:  # reported on a worker, not here
                trial.report(float(value), epoch)
                seen[epoch] = float(value)
        if self.name != "median":
            self._note_rungs(number, seen, complete=result.ok and not pruned)
        if pruned:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif result.ok:
            self.study.tell(trial, result.reward)
            self._note_finished(seen)
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
