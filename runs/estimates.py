"""A run's architectures ranked by their estimated mean reward over every evaluation, not by one lucky child.

The children of a run that share an architecture (the same token sequence, or the same canonical one
where the space declares a canonical form) are evaluations of it. `rank` groups a run's finished
children so, estimates each architecture's mean reward with `l2l.controllers.noise.Evaluations` and
says how sure the ranking is: `l2l runs best` and `runs top` read it, and so does the progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from l2l.controllers.noise import ArchEstimate, Evaluations, chance_better
from l2l.runs.store import ChildRecord
from l2l.search_spaces import SearchSpace
from l2l.search_spaces.constraints import IDENTITY_CACHE, Constraints

SURE = 0.95  # the posterior probability over the runner-up at which the best is no longer called uncertain


@dataclass(frozen=True)
class RankedArch:
    """One architecture of a run: its estimate and the finished children that evaluated it, first first."""

    estimate: ArchEstimate
    children: tuple[ChildRecord, ...]

    @property
    def child(self) -> ChildRecord:
        """The child that stands for the architecture: its first evaluation."""
        return self.children[0]


@dataclass(frozen=True)
class Ranking:
    """A run's architectures, best estimate first, and what the evaluations say about the noise."""

    archs: tuple[RankedArch, ...]
    noise_sd: float | None  # None: no architecture was evaluated twice (and the rewards are not exact)
    exact: bool

    def doubt(self, reevaluates: bool = False) -> str | None:
        """Why the best is still uncertain, in one line, or None when it is not (or there is no runner-up);
        ``reevaluates``: the run's strategy re-evaluates (``+reeval``), which it has not done yet."""
        if len(self.archs) < 2 or self.exact:
            return None
        best, second = self.archs[0], self.archs[1]
        if self.noise_sd is None:
            why = "yet" if reevaluates else "(a STRATEGY+reeval search re-evaluates the best ones)"
            return f"the noise is unknown: no architecture was evaluated twice {why}"
        p = chance_better(best.estimate, second.estimate)
        if p is None or p >= SURE:
            return None
        return (
            f"the best is uncertain: it beats the runner-up, child {second.child.number} (estimate "
            f"{second.estimate.estimate:.4f} over {second.estimate.n}), with probability {p:.2f} only"
        )


class ArchKeys:
    """The architecture of a child's tokens under a space's canonical form (the tokens themselves without one);
    each distinct sequence is worked out once (a run of 100,000 children repeats a few thousand)."""

    def __init__(self, space: SearchSpace | None) -> None:
        self.constraints = Constraints.of(space) if space is not None else None
        self._seen: dict[tuple[int, ...], tuple[int, ...]] = {}

    def __call__(self, tokens: Sequence[int]) -> tuple[int, ...]:
        asked = tokens if isinstance(tokens, tuple) else tuple(tokens)
        found = self._seen.get(asked)
        if found is None:
            if len(self._seen) >= IDENTITY_CACHE:  # a search's lifetime of distinct architectures: bounded
                self._seen.clear()
            found = self._seen[asked] = (
                self.constraints.canonical(asked) if self.constraints is not None else tuple(map(int, asked))
            )
        return found


def retrained_with(child: ChildRecord) -> tuple[tuple[str, Any], ...]:
    """The budget a weight-sharing run's retraining trained with (`l2l runs best --retrain --epochs 1`), its seed
    left out: retrainings with other budgets are not evaluations of one thing. () for any other child."""
    how = (child.metrics.get("info") or {}).get("retrained_with")
    return tuple(sorted((str(k), v) for k, v in how.items() if k != "seed")) if isinstance(how, dict) else ()


Rows = Sequence[tuple[int, Sequence[int], float]]  # finished children's (number, tokens, reward)


@dataclass(frozen=True)
class Keyed:
    """Finished children's (number, tokens, reward) rows in child order, each with its architecture (`ArchKeys`
    of a space): what `best_arch` and `best_curve` group, worked out once for both (a dashboard draws both)."""

    rows: Rows
    keys: Sequence[tuple[int, ...]]

    @staticmethod
    def of(rows: Rows, space: SearchSpace | None) -> Keyed:
        """``rows`` in child order, keyed by ``space``'s canonical form (by their tokens without a space)."""
        ordered = sorted(rows, key=itemgetter(0))
        return Keyed(ordered, list(map(ArchKeys(space), map(itemgetter(1), ordered))))


def best_arch(rewards: Rows | Keyed, space: SearchSpace | None) -> tuple[ArchEstimate, int, bool] | None:
    """What `rank` puts first, the number of its first child and whether any architecture was evaluated more
    than once (the best is then an estimate, not a reward), from the finished children's (number, tokens,
    reward) as `Store.rewards` reads them (for lists of runs, and pages that poll), or those rows `Keyed` by
    ``space``; None when there are none."""
    keyed = rewards if isinstance(rewards, Keyed) else Keyed.of(rewards, space)
    first = dict[tuple[int, ...], int]()
    for k, (number, _, _) in zip(keyed.keys, keyed.rows, strict=True):
        first.setdefault(k, number)
    evaluations = Evaluations()
    evaluations.add_many(keyed.keys, [reward for _, _, reward in keyed.rows])
    best = evaluations.estimates(noise_sd=0.0 if space is not None and space.exact_rewards() else None, limit=1)
    return (best[0], first[best[0].key], len(first) < len(keyed.rows)) if best else None  # type: ignore[index]


def best_estimate(rewards: Sequence[tuple[int, Sequence[int], float]], space: SearchSpace | None) -> float | None:
    """The estimate of `best_arch`; None when there are no rewards."""
    found = best_arch(rewards, space)
    return None if found is None else found[0].estimate


def half_width(estimate: ArchEstimate) -> float | None:
    """Half the 95% interval of an architecture's estimated mean (what `l2l runs best` prints after its ±); None
    for one evaluation or while the noise is unknown."""
    interval = estimate.interval()
    return None if interval is None or estimate.n < 2 else (interval[1] - interval[0]) / 2


def rank(children: Sequence[ChildRecord], space: SearchSpace | None, transformed: bool = False) -> Ranking:
    """The finished children with a reward, grouped by architecture and ranked by estimated mean. ``space``
    gives the canonical form and whether rewards are exact; None (a plugin that is gone) groups by tokens.
    With ``transformed``, by the reward the controller learned from (its reward transform's value)."""
    key = ArchKeys(space)
    exact = space is not None and space.exact_rewards()

    def reward(c: ChildRecord) -> float | None:
        return c.controller_reward if transformed else c.reward

    groups: dict[tuple[int, ...], list[ChildRecord]] = {}
    for c in sorted(children, key=lambda c: c.number):
        if c.status == "done" and reward(c) is not None:
            groups.setdefault(key(c.tokens), []).append(c)
    evaluations = Evaluations.of((k, float(reward(c) or 0.0)) for k, cs in groups.items() for c in cs)
    estimates = evaluations.estimates(noise_sd=0.0 if exact else None)
    archs = tuple(RankedArch(e, tuple(groups[e.key])) for e in estimates)  # type: ignore[index]
    return Ranking(archs, 0.0 if exact else evaluations.noise_sd(), exact)


def best_so_far(
    done: Sequence[ChildRecord], estimate: bool = True, space: SearchSpace | None = None
) -> tuple[list[tuple[int, float]], bool]:
    """(child number, best so far) after each of the finished children ``done``, in order, and whether it is an
    estimate: where some architecture (grouped as `rank` groups them, by ``space``'s canonical form) was
    evaluated more than once, the best estimated mean over the evaluations so far (what `l2l runs best` would
    have named then), else (or without ``estimate``: scores that are not evaluations, such as shared-weight
    ones) the highest reward."""
    rows = [(c.number, c.tokens, float(c.reward)) for c in done if c.reward is not None]
    return best_curve(rows, space, estimate)


def best_curve(
    rows: Rows | Keyed,
    space: SearchSpace | None,
    estimate: bool = True,
    points: int | None = None,
) -> tuple[list[tuple[int, float]], bool]:
    """`best_so_far` from (number, tokens, reward) rows, or those rows `Keyed` by ``space``; with ``points``, the
    estimate is taken after about that many evenly spaced children only (and the last), so a run of 100,000
    children costs ``points`` rankings, not one per child."""
    keyed = rows if isinstance(rows, Keyed) else Keyed.of(rows, space)
    ordered, index = keyed.rows, dict[tuple[int, ...], int]()
    ids = [index.setdefault(k, len(index)) for k in keyed.keys]  # each architecture a number: cheap to group by
    repeated = estimate and len(index) < len(ordered)
    rewards = [reward for _, _, reward in ordered]
    every = max(1, -(-len(ordered) // points)) if points else 1  # at most ``points`` stretches
    evaluations, best, out = Evaluations(), float("-inf"), []
    for start in range(0, len(ordered), every):  # the evaluations up to each point, added a stretch at a time
        end = min(start + every, len(ordered))
        if repeated:
            evaluations.add_many(ids[start:end], rewards[start:end])
        best = max(best, *rewards[start:end])
        out.append((ordered[end - 1][0], evaluations.estimates(limit=1)[0].estimate if repeated else best))
    return out, repeated
