"""A run's architectures ranked by their estimated mean reward over every evaluation, not by one lucky child.

The children of a run that share an architecture (the same token sequence, or the same canonical one
where the space declares a canonical form) are evaluations of it. `rank` groups a run's finished
children so, estimates each architecture's mean reward with `l2l.controllers.noise.Evaluations` and
says how sure the ranking is: `l2l runs best` and `runs top` read it, and so does the progress bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from l2l.controllers.noise import ArchEstimate, Evaluations, chance_better
from l2l.runs.store import ChildRecord
from l2l.search_spaces import SearchSpace
from l2l.search_spaces.constraints import Constraints

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
    """The architecture of a child's tokens under a space's canonical form (the tokens themselves without one)."""

    def __init__(self, space: SearchSpace | None) -> None:
        self.constraints = Constraints.of(space) if space is not None else None

    def __call__(self, tokens: Sequence[int]) -> tuple[int, ...]:
        if self.constraints is not None:
            return self.constraints.canonical(tokens)
        return tuple(map(int, tokens))


def best_arch(
    rewards: Sequence[tuple[int, Sequence[int], float]], space: SearchSpace | None
) -> tuple[ArchEstimate, int, bool] | None:
    """What `rank` puts first, the number of its first child and whether any architecture was evaluated more
    than once (the best is then an estimate, not a reward), from the finished children's (number, tokens,
    reward) as `Store.rewards` reads them (for lists of runs, and pages that poll); None when there are none."""
    key, first = ArchKeys(space), dict[tuple[int, ...], int]()
    ordered = sorted(rewards, key=lambda r: r[0])
    keys = [key(tokens) for _, tokens, _ in ordered]
    for k, (number, _, _) in zip(keys, ordered, strict=True):
        first.setdefault(k, number)
    evaluations = Evaluations()
    evaluations.add_many(keys, [reward for _, _, reward in ordered])
    best = evaluations.estimates(noise_sd=0.0 if space is not None and space.exact_rewards() else None, limit=1)
    return (best[0], first[best[0].key], len(first) < len(rewards)) if best else None  # type: ignore[index]


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
    rows: Sequence[tuple[int, Sequence[int], float]],
    space: SearchSpace | None,
    estimate: bool = True,
    points: int | None = None,
) -> tuple[list[tuple[int, float]], bool]:
    """`best_so_far` from (number, tokens, reward) rows; with ``points``, the estimate is taken after about
    that many evenly spaced children only (and the last), so a run of 100,000 children costs ``points``
    rankings, not one per child."""
    key = ArchKeys(space)
    ordered = sorted(rows, key=lambda r: r[0])
    keys = [key(tokens) for _, tokens, _ in ordered]
    repeated = estimate and len(set(keys)) < len(ordered)
    every = max(1, len(ordered) // points) if points else 1
    evaluations, best, out = Evaluations(), float("-inf"), []
    for start in range(0, len(ordered), every):  # the evaluations up to each point, added a stretch at a time
        stretch = ordered[start : start + every]
        rewards = [reward for _, _, reward in stretch]
        evaluations.add_many(keys[start : start + every], rewards)
        best = max(best, *rewards)
        out.append((stretch[-1][0], evaluations.estimates(limit=1)[0].estimate if repeated else best))
    return out, repeated
