"""What the dashboard's charts draw, made small on the server: a run of 100,000 children becomes a few
thousand points that keep every bucket's lowest and highest reward, a best-so-far line of its steps only,
and a histogram."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from l2l.controllers.names import split_name
from l2l.runs.plots import learns_stored_means, pareto_front, update_mean_label, update_positions

MAX_POINTS = 2000  # points per plotted series: enough for a 1,500-pixel-wide chart
# where the best estimated mean so far is worked out (each a ranking of every architecture): once per bucket of
# the children's scatter (`extremes` keeps two points of each of MAX_POINTS // 2 buckets), about one per pixel
BEST_STEPS = MAX_POINTS // 2


def extremes(xs: ArrayLike, ys: ArrayLike, points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most about ``points`` of (xs, ys), in order: all of them when few, else the lowest and the highest y of
    each of ``points // 2`` buckets of consecutive points (outliers and the envelope survive, the clutter goes)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    n = len(x)
    if n <= points:
        return x.tolist(), y.tolist()
    buckets = max(1, points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    keep: list[int] = []
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        part = y[lo:hi]
        a, b = lo + int(np.argmin(part)), lo + int(np.argmax(part))
        keep.extend(sorted({a, b}))
    return x[keep].tolist(), y[keep].tolist()


def means(xs: ArrayLike, ys: ArrayLike, points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most ``points`` of a line: each the mean of a bucket of consecutive points (a smooth line stays so)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    n = len(x)
    if n <= points:
        return x.tolist(), y.tolist()
    edges = np.linspace(0, n, points + 1).astype(int)
    sizes = np.diff(edges)
    return (np.add.reduceat(x, edges[:-1]) / sizes).tolist(), (np.add.reduceat(y, edges[:-1]) / sizes).tolist()


def best_so_far(xs: ArrayLike, rewards: ArrayLike) -> tuple[list[int], list[float]]:
    """The steps of the best reward so far: the child at which it rose and its value, and the last child."""
    numbers = np.asarray(xs, dtype=float)
    if not len(numbers):
        return [], []
    best = np.maximum.accumulate(np.asarray(rewards, dtype=float))
    rises = np.flatnonzero(np.r_[True, best[1:] > best[:-1]])
    xs = [int(numbers[i]) for i in rises]
    ys = [float(best[i]) for i in rises]
    if xs[-1] != int(numbers[-1]):
        xs.append(int(numbers[-1]))
        ys.append(float(best[-1]))
    return xs, ys


def histogram(rewards: ArrayLike, bins: int = 40) -> dict[str, list[float]]:
    """Counts of rewards in ``bins`` equal bins: their left edges, width and counts."""
    values = np.asarray(rewards, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"edges": [], "counts": [], "width": [0.0]}
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": edges[:-1].tolist(), "counts": counts.tolist(), "width": [float(edges[1] - edges[0])]}


def batch_means(rows: Any) -> tuple[list[float], list[float]]:
    """Each batch's mean reward, placed after its newest child (as `l2l plot progress` places updates), from an
    (n, 3) array of (number, batch, reward) rows."""
    if not len(rows):
        return [], []
    batches, which = np.unique(rows[:, 1], return_inverse=True)
    sizes = np.bincount(which)
    if sizes.max() <= 1:
        return [], []  # one child per batch: its mean is the child's own reward, already drawn
    sums = np.bincount(which, weights=rows[:, 2])
    after = np.full(len(batches), -np.inf)
    np.maximum.at(after, which, rows[:, 0] + 1)
    order = np.argsort(after, kind="stable")
    return means(after[order].tolist(), (sums / sizes)[order].tolist())


def update_means(
    rows: Sequence[tuple[int, int, float]], learned: Sequence[Sequence[int]], stored: Sequence[float] | None = None
) -> tuple[list[float], list[float]]:
    """The mean reward of the children each controller update learned from (``learned``: their numbers, per
    update), placed after the newest of them and never before the update before it, as `l2l plot progress`
    places them: in an asynchronous run an update's children are not one proposal batch. ``stored``: each
    update's own mean (what it learned from, failures at their failure reward), else the raw mean of those of
    its children that finished."""
    if not any(len(numbers) > 1 for numbers in learned):  # one child each: its own reward, already drawn
        return [], []
    reward = {int(n): float(r) for n, _, r in rows}
    xs: list[float] = []
    ys: list[float] = []
    for i, (at, numbers) in enumerate(zip(update_positions(learned), learned, strict=True)):
        found = [reward[int(n)] for n in numbers if int(n) in reward]  # raw rewards of those that finished
        if stored is not None and numbers:
            xs.append(float(at))
            ys.append(float(stored[i]))
        elif found:
            xs.append(float(at))
            ys.append(sum(found) / len(found))
    return means(xs, ys)


def progress(
    rows: Sequence[tuple[int, int, float]],
    failed: Sequence[int],
    learned: Sequence[Sequence[int]] = (),
    stored: Sequence[float] | None = None,
    transform: str = "reward",
) -> dict[str, Any]:
    """Every chart of a run's rewards from (number, batch, reward) of its finished children, in child order, the
    numbers of its failures, and the children each controller update learned from (none in a store written
    before updates named them: then each proposal batch's mean), with each update's stored mean reward where
    the run learns from its rewards untransformed (``transform``, `update_mean_label`)."""
    arr = np.asarray(rows, dtype=float).reshape(-1, 3)
    numbers, rewards = arr[:, 0], arr[:, 2]
    x, y = extremes(numbers, rewards)
    bx, by = best_so_far(numbers, rewards)
    plain = stored is not None and learns_stored_means(transform, False, learned)
    mx, my = update_means(rows, learned, stored if plain else None) if learned else batch_means(arr)
    fx = extremes(failed, [0.0] * len(failed))[0] if len(failed) else []
    label = update_mean_label(plain)
    return {
        "children": {"x": x, "y": y, "shown": len(x), "of": len(arr)},
        "best": {"x": bx, "y": by},
        "batch_mean": {"x": mx, "y": my, "label": label, "of_updates": bool(learned)},  # else: proposal batches
        "failed": {"x": fx, "y": [float(rewards.min()) if len(arr) else 0.0] * len(fx), "of": len(failed)},
        "histogram": histogram(rewards),
    }


POLICIES = ("reinforce", "ppo")  # the strategies that learn a policy by its loss (a zero loss is then a fact)


def updates(rows: Sequence[tuple[int, float, float, float]], strategy: str = "the strategy") -> dict[str, Any]:
    """Controller entropy and loss per update, at most `MAX_POINTS` of each (bucket means). A strategy without a
    policy (TPE, evolution) stores 0 for both, random search a loss of 0: no line (None) where every value is 0,
    as `l2l runs show` and `l2l plot progress` tell it, and ``note`` says why."""
    versions = [float(v) for v, _, _, _ in rows]
    lx, loss = means(versions, [r[1] for r in rows])
    _, entropy = means(versions, [r[2] for r in rows])
    policy = split_name(strategy)[0] in POLICIES
    has_loss, has_entropy = any(r[1] for r in rows) or policy, any(r[2] for r in rows)
    note = ""
    if rows and policy and not any(r[1] for r in rows):  # its zeros are drawn: a policy's loss, not a missing one
        note = f"{strategy}'s loss was 0 at every update: each update's rewards were all equal (every child failed?)"
    elif rows and not (has_loss or has_entropy):
        note = f"{strategy} has no policy: it reports no entropy and no loss"
    elif rows and not has_loss:
        note = f"{strategy} learns no policy: it reports no loss"
    elif rows and not has_entropy:
        note = f"{strategy} reports no entropy"
    return {"x": lx, "loss": loss if has_loss else None, "entropy": entropy if has_entropy else None,
            "of": len(rows), "note": note}  # fmt: skip


def by_architecture(points: list[tuple[float, float, int]], arch: dict[int, Any]) -> list[tuple[float, float, int]]:
    """(cost, accuracy, child) per architecture (``arch``: each child's architecture key), each the mean over
    the children that evaluated it and named by the first, as `l2l plot pareto` draws them."""
    if not points:
        return []
    arr = np.asarray(points, dtype=float).reshape(-1, 3)
    arr = arr[np.argsort(arr[:, 2], kind="stable")]
    groups: dict[Any, int] = {}  # a child without a known architecture is one of its own
    ids = [groups.setdefault(arch.get(n, n), len(groups)) for n in arr[:, 2].astype(int).tolist()]
    which = np.asarray(ids, dtype=np.int64)
    sizes = np.bincount(which)
    first = np.full(len(sizes), len(arr))
    np.minimum.at(first, which, np.arange(len(arr)))
    cost, acc = np.bincount(which, weights=arr[:, 0]) / sizes, np.bincount(which, weights=arr[:, 1]) / sizes
    return list(zip(cost.tolist(), acc.tolist(), arr[first, 2].astype(int).tolist(), strict=True))


def pareto(points: list[tuple[float, float, int]], key: str) -> dict[str, Any]:
    """Accuracy against cost ``key``: the Pareto front in full (`l2l.runs.plots.pareto_front`) and at most
    `MAX_POINTS` other children, in child order."""
    if not points:
        empty: dict[str, list[float]] = {"x": [], "y": [], "child": []}
        return {"cost": key, "points": empty, "front": empty, "of": 0}
    arr = np.asarray(points, dtype=float)
    front = np.asarray(pareto_front(arr), dtype=float).reshape(-1, 3)
    shown = arr[np.argsort(arr[:, 2], kind="stable")][:: max(1, len(arr) // MAX_POINTS)]

    def columns(a: Any) -> dict[str, list[float]]:
        return {"x": a[:, 0].tolist(), "y": a[:, 1].tolist(), "child": a[:, 2].astype(int).tolist()}

    return {"cost": key, "points": columns(shown), "front": columns(front), "of": len(points)}


def planned(run: Any) -> int:
    """The architectures a weight-sharing run's controller scores during its epochs: its children less the
    ``derive`` candidates scored at the end."""
    from l2l.runs.sharing_config import SharingConfig

    derive = (run.config.get("weight_sharing") or {}).get("derive", SharingConfig.derive)
    return max(run.n_children - int(derive), 0)
