"""Plots of a run drawn with matplotlib (Agg backend, files only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2l.runs.estimates import best_so_far
from l2l.runs.store import ChildRecord, RunRecord, UpdateRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

    from l2l.search_spaces import SearchSpace


class PlotError(ValueError):
    """A plot that cannot be drawn or written as asked (no data, a file type matplotlib cannot write)."""


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain(ax: Axes) -> None:
    """Tick labels as plain numbers: never an offset like ``1e-5+1.30763e1`` on a near-constant axis."""
    for axis in ("x", "y"):
        if getattr(ax, f"get_{axis}scale")() == "linear":
            ax.ticklabel_format(axis=axis, useOffset=False, style="plain")


def save(fig: Figure, out: Path, dpi: int) -> Path:
    """Write ``fig`` to ``out`` (its suffix picks the format) and close it."""
    plt = pyplot()
    kind = out.suffix.lstrip(".").lower()
    known = fig.canvas.get_supported_filetypes()
    folder = next((p for p in out.parents if p.exists()), Path("."))
    problem = (
        "is a directory (name the image file)"
        if out.is_dir()
        else f"{str(folder)!r} is not a directory"
        if not folder.is_dir()
        else f"unknown image type {kind!r}; known: {', '.join(sorted(known))}"
        if kind not in known
        else None
    )
    if problem is not None:
        plt.close(fig)
        raise PlotError(f"cannot write {str(out)!r}: {problem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def update_positions(learned: Sequence[Sequence[int]]) -> list[int]:
    """Each controller update's place on the child axis, from the numbers of the children it learned from:
    just after the newest of them, and never before an earlier update (in an asynchronous run children
    finish, and fail, out of order, so an update may learn from older children than the one before it)."""
    places, x = [], 0
    for numbers in learned:
        x = max([x, *(int(n) + 1 for n in numbers)])
        places.append(x)
    return places


def update_points(children: list[ChildRecord], updates: list[UpdateRecord]) -> list[tuple[int, list[ChildRecord]]]:
    """Each controller update's place on the child axis (`update_positions`) and the children whose rewards it
    learned from. Stores written before updates named their children fall back to batches."""
    by_number = {c.number: c for c in children}
    members = []
    for u in updates:
        numbers = [int(n) for n in u.extra.get("children", [])]
        members.append([by_number[n] for n in numbers if n in by_number] or [c for c in children if c.batch == u.batch])
    return list(zip(update_positions([[c.number for c in m] for m in members]), members, strict=True))


def learns_stored_means(transform: str, shared: bool, learned: Sequence[Sequence[int]]) -> bool:
    """Whether the line of each update's mean reward is the mean each update stored (what it learned from,
    failures at their failure reward): a run that learns from its rewards untransformed, not scored with shared
    weights, whose updates all name their children (``learned``: their numbers, per update; older stores'
    updates name none). `l2l plot progress` and the dashboard decide it here."""
    return transform == "reward" and not shared and bool(learned) and all(learned)


def update_mean_label(stored: bool) -> str:
    """What the line of each controller update's mean reward is: the mean each update stored (what it learned
    from: a plain run without a reward transform whose updates name their children), else the raw mean of the
    finished children of each update (or batch)."""
    if stored:
        return "mean reward each update learned from (failures at their failure reward)"
    return "mean raw reward of each update's finished children"


def progress_figure(
    run: RunRecord, children: list[ChildRecord], updates: list[UpdateRecord], space: SearchSpace | None = None
) -> Figure:
    """Reward per child, best so far and each update's mean reward on top; controller entropy below, at the
    same x as its update. Rewards are raw; a controller with a reward transform learns from transformed ones.
    ``space`` (the run's) groups repeated evaluations by its canonical form, as `l2l runs best` does."""
    from matplotlib.ticker import MaxNLocator

    scored = "shared" if run.config.get("weight_sharing") is not None else "done"  # weight sharing: its scores
    done = [c for c in children if c.status == scored and c.reward is not None]
    rewards = [float(c.reward or 0.0) for c in done]
    failed = [c for c in children if c.status == "failed"]
    if not done and not failed:  # empty axes would look like a plotting bug
        what = "no architecture scored with shared weights" if scored == "shared" else "no child finished"
        raise PlotError(f"run {run.id} ({run.status}) has {what} yet: nothing to plot")
    plt = pyplot()
    fig, (ax, ax_ent) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if done:
        ax.scatter([c.number for c in done], rewards, s=12, alpha=0.6, label="child reward")
    if failed:  # on the bottom edge: a failure has no reward to place it by (its failure reward is the controller's)
        xs = [c.number for c in failed]
        ax.scatter(xs, [0.02] * len(xs), marker="x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False)
        ax.dataLim.update_from_data_x(xs, ignore=False)  # drawn on the axes' y, they still set the x-range
        ax.scatter([], [], marker="x", color="tab:red", label="failed (no reward; on the bottom edge)")
    steps, estimated = best_so_far(done, estimate=scored == "done", space=space)  # repeated evaluations: the best mean
    if steps:
        label = "best estimated mean so far" if estimated else "best so far"
        last = max(c.number for c in [*done, *failed])
        steps = [*steps, (last, steps[-1][1])] if last > steps[-1][0] else steps  # it holds to the run's last child
        ax.step(*zip(*steps, strict=True), where="post", color="black", label=label)
    points = update_points(children, updates)
    transform = str((run.config.get("controller") or {}).get("reward_transform", "reward"))
    stored = learns_stored_means(transform, scored == "shared", [u.extra.get("children", []) for u in updates])
    if stored:
        means = [(x, u.mean_reward) for (x, members), u in zip(points, updates, strict=True) if members]
    else:  # the controller learned from transformed rewards: the raw mean of the finished ones
        means = [
            (x, sum(r) / len(r))
            for x, members in points
            if (r := [float(c.reward) for c in members if c.status == scored and c.reward is not None])
        ]
    if any(len(members) > 1 for _, members in points) and means:
        mean_xs, mean_ys = zip(*means, strict=True)
        ax.plot(mean_xs, mean_ys, color="tab:orange", marker="o", ms=3, label=update_mean_label(stored))
    ylabel = "reward" if transform == "reward" else "reward (raw)"
    ax.set_ylabel(f"{ylabel} with shared weights" if scored == "shared" else ylabel)
    learns = "" if transform == "reward" else f"\nthe controller learns from {transform}"
    ax.set_title(f"run {run.id}: {run.space} / {run.strategy} (seed {run.seed}){learns}")
    ax.legend(loc="best" if len(children) <= 5000 else "lower right")  # the least covered corner, while cheap
    ax.grid(alpha=0.3)
    if any(u.entropy for u in updates):
        ax_ent.plot([x for x, _ in points], [u.entropy for u in updates], color="tab:green", marker=".")
    elif updates:  # a strategy without a policy (TPE, evolution) reports none: say so, not a line at 0
        ax_ent.text(0.5, 0.5, f"{run.strategy} reports no entropy", transform=ax_ent.transAxes, ha="center")
    ax_ent.set_ylabel("controller entropy")
    ax_ent.set_xlabel("child (an update sits after the newest child it learned from)")
    ax_ent.grid(alpha=0.3)
    ax_ent.xaxis.set_major_locator(MaxNLocator(integer=True))
    for a in (ax, ax_ent):
        _plain(a)
    fig.tight_layout()
    return fig


def plot_progress(
    run: RunRecord,
    children: list[ChildRecord],
    updates: list[UpdateRecord],
    out: Path,
    space: SearchSpace | None = None,
) -> Path:
    """Write `progress_figure` to ``out``."""
    return save(progress_figure(run, children, updates, space), out, dpi=120)


BAND_FROM = 20  # sd bands over seeds start here: before, best-so-far values spread over the whole range


def checked_curves(payload: Any) -> dict[str, dict[str, list[float]]]:
    """The ``curves`` of a benchmark JSON, each strategy's ``mean`` and ``sd`` lists of numbers of one length;
    `PlotError` names what does not fit."""
    if not isinstance(payload, dict) or "curves" not in payload:
        raise PlotError(
            "the JSON has no 'curves': best-so-far curves as python -m benchmarks.nb201 writes them (files that "
            "join runs, or report tables only, keep none)"
        )
    curves = payload["curves"]
    if not isinstance(curves, dict) or not curves:
        raise PlotError(f"'curves' must map each strategy to its mean and sd lists, got {type(curves).__name__}")
    for strategy, curve in curves.items():
        lists = [curve.get(key) if isinstance(curve, dict) else None for key in ("mean", "sd")]
        numbers = all(isinstance(v, list) and v and all(isinstance(x, int | float) for x in v) for v in lists)
        if not numbers or len(lists[0]) != len(lists[1]):  # type: ignore[arg-type]
            raise PlotError(
                f"curve {strategy!r} must hold 'mean' and 'sd', two lists of numbers of one length (one per query)"
            )
    return curves


def benchmark_figure(payload: dict[str, Any]) -> Figure:
    """Best-so-far curves from a benchmark JSON (benchmarks/nb201.py): every query's mean on the left, and
    from query 20 on the mean ± sd bands on a scale they fit, on the right (early queries' bands span
    tens of points and would cover everything)."""
    plt = pyplot()
    curves = checked_curves(payload)
    length = max(len(c["mean"]) for c in curves.values())
    zoom = length > 2 * BAND_FROM
    fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(12 if zoom else 8, 5), squeeze=False)
    whole, bands = axes[0][0], axes[0][-1]
    start = BAND_FROM if zoom else 1
    seeds = payload.get("seeds", "?")
    for n, (strategy, curve) in enumerate(curves.items()):
        mean, sd = curve["mean"], curve["sd"]
        colour = f"C{n % 10}"
        xs = list(range(1, len(mean) + 1))
        whole.plot(xs, mean, label=strategy, color=colour)
        if zoom:
            bands.plot(xs[start - 1 :], mean[start - 1 :], label=strategy, color=colour)
        lows = [m - s for m, s in zip(mean, sd, strict=True)][start - 1 :]
        highs = [m + s for m, s in zip(mean, sd, strict=True)][start - 1 :]
        bands.fill_between(xs[start - 1 :], lows, highs, alpha=0.12, color=colour, lw=0)
    whole.set_xscale("log")
    whole.set_xlabel("queries")
    whole.set_ylabel("test accuracy of the best-reward candidate (%)")
    whole.set_title(f"mean over {seeds} seeds" if zoom else f"mean ± sd over {seeds} seeds")
    if zoom:
        bands.set_xlabel("queries")
        bands.set_title(f"from query {BAND_FROM}: mean ± sd over {seeds} seeds")
        tails = [
            v
            for c in curves.values()
            for m, s in list(zip(c["mean"], c["sd"], strict=True))[start - 1 :]
            for v in (m - s, m + s)
        ]
        pad = 0.05 * (max(tails) - min(tails) or 1.0)
        bands.set_ylim(min(tails) - pad, max(tails) + pad)
    for a in (whole, bands):
        a.grid(alpha=0.3)
        a.legend(loc="lower right")
        _plain(a)
    fig.suptitle(f"{payload.get('dataset', '')}: best so far")
    fig.tight_layout()
    return fig


def plot_benchmark(payload: dict[str, Any], out: Path) -> Path:
    """Write `benchmark_figure` to ``out``."""
    return save(benchmark_figure(payload), out, dpi=120)


def pareto_front(points: list[tuple[float, float, int]] | NDArray[Any]) -> list[tuple[float, float, int]]:
    """The (cost, accuracy, child) points no other point beats on both: cheaper and at least as accurate;
    in order of cost (vectorized: the dashboard asks it of 100,000 children)."""
    import numpy as np

    arr = np.asarray(points, dtype=float)  # an array of (cost, accuracy, child) rows is taken as it is
    if not len(arr):
        return []
    order = np.lexsort((-arr[:, 1], arr[:, 0]))  # by cost, the more accurate first among equal costs
    acc = arr[order, 1]
    before = np.r_[-np.inf, np.maximum.accumulate(acc)[:-1]]
    return [(float(c), float(a), int(n)) for c, a, n in arr[order[acc > before]]]


def pareto_axis(children: list[ChildRecord]) -> str:
    """What a Pareto plot's vertical axis shows: validation accuracy where every finished child has one."""
    done = [c for c in children if c.status == "done"]
    return pareto_axis_of(bool(done) and all(c.val_acc is not None for c in done))


def pareto_axis_of(accurate: bool) -> str:
    """`pareto_axis` where ``accurate`` says whether some child finished and every finished one has a validation
    accuracy (the dashboard counts them in the database)."""
    return "validation accuracy" if accurate else "reward (the space's, before any transform)"


def pareto_points(
    children: list[ChildRecord], cost: str, space: SearchSpace | None = None
) -> tuple[list[tuple[float, float, int]], dict[int, int]]:
    """(cost, accuracy, first child) per architecture (grouped as `l2l runs top` groups them, by ``space``'s
    canonical form; a weight-sharing run's retrainings apart by budget), each the mean over its evaluations, and
    the number of evaluations by first child."""
    from l2l.runs.estimates import ArchKeys, retrained_with

    key, groups = ArchKeys(space), dict[Any, list[tuple[float, float, int]]]()
    for c in sorted(children, key=lambda c: c.number):
        value = (c.metrics.get("cost") or {}).get(cost)
        acc = c.val_acc if c.val_acc is not None else c.reward
        if c.status == "done" and value is not None and acc is not None:
            groups.setdefault((key(c.tokens), retrained_with(c)), []).append((float(value), float(acc), c.number))
    points = [(sum(v for v, _, _ in g) / len(g), sum(a for _, a, _ in g) / len(g), g[0][2]) for g in groups.values()]
    return points, {g[0][2]: len(g) for g in groups.values()}


def plot_pareto(
    run: RunRecord, children: list[ChildRecord], cost: str, out: Path, space: SearchSpace | None = None
) -> tuple[Path, list[Any], dict[int, int]]:
    """Validation accuracy against ``cost`` (log scale) per architecture (the mean over its evaluations, named
    by its first child), the Pareto front marked; also the evaluations per architecture.

    A space whose results carry no validation accuracy (a language model's perplexity, say) is plotted by its
    reward, as the space returns it (before any reward transform), and the axis says so."""
    plt = pyplot()
    axis = pareto_axis(children)
    points, evaluations = pareto_points(children, cost, space)
    sharing = run.config.get("weight_sharing") is not None  # its scores carry no cost: the hint below says why
    if not sharing and not any(c.status == "done" for c in children):  # not a missing cost: nothing to plot yet
        raise PlotError(f"run {run.id} ({run.status}) has no child finished yet: nothing to plot")
    if not points:
        reported = sorted({k for c in children for k in (c.metrics.get("cost") or {})})
        hint = ""
        if sharing and not reported:
            hint = f" (a weight-sharing run's costs come from retraining: l2l runs best {run.id} --retrain)"
        raise PlotError(
            f"no finished child of run {run.id} reports the cost {cost!r}; reported: {', '.join(reported) or 'none'}"
            + hint
        )
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    repeated = any(n > 1 for n in evaluations.values())
    label = "architectures (mean of their evaluations)" if repeated else "children"
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.5, label=label)
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
    ax.scatter([p[0] for p in front], [p[1] for p in front], color="tab:red", s=24)
    for c_value, acc, number in front:
        ax.annotate(str(number), (c_value, acc), textcoords="offset points", xytext=(3, 3), fontsize=7)
    if min(p[0] for p in points) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(cost)
    ax.set_ylabel(axis)
    ax.set_title(f"run {run.id} ({run.space}): {axis.split(' (')[0]} against {cost}")
    ax.legend()
    _plain(ax)
    fig.tight_layout()
    return save(fig, out, dpi=110), front, evaluations
