"""Plots of a run drawn with matplotlib (Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2l.runs.store import ChildRecord, RunRecord, UpdateRecord


def plot_progress(run: RunRecord, children: list[ChildRecord], updates: list[UpdateRecord], out: Path) -> Path:
    """Reward per child, best so far and batch means on top; controller entropy below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_ent) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    done = [c for c in children if c.status == "done" and c.reward is not None]
    rewards = [float(c.reward or 0.0) for c in done]
    failed = [c for c in children if c.status == "failed"]
    ax.scatter([c.number for c in done], [c.reward for c in done], s=12, alpha=0.6, label="child reward")
    if failed:
        floor = min(rewards, default=0.0)
        ax.scatter([c.number for c in failed], [floor] * len(failed), marker="x", color="tab:red", label="failed")
    best, xs, ys = float("-inf"), [], []
    for c in done:
        if c.reward is not None and c.reward > best:
            best = c.reward
        xs.append(c.number)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="black", label="best so far")
    batches: dict[int, list[float]] = {}
    for c in done:
        if c.reward is not None:
            batches.setdefault(c.batch, []).append(c.reward)
    if batches:
        centers = [sum(c.number for c in done if c.batch == b) / len(v) for b, v in sorted(batches.items())]
        ax.plot(
            centers,
            [sum(v) / len(v) for _, v in sorted(batches.items())],
            color="tab:orange",
            marker="o",
            ms=3,
            label="batch mean",
        )
    ax.set_ylabel("reward")
    ax.set_title(f"run {run.id}: {run.space} / {run.strategy} (seed {run.seed})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    if updates:
        ends = []
        for u in updates:
            members = [c.number for c in children if c.batch == u.batch]
            ends.append(max(members) + 1 if members else u.batch)
        ax_ent.plot(ends, [u.entropy for u in updates], color="tab:green", marker=".")
    ax_ent.set_ylabel("controller entropy")
    ax_ent.set_xlabel("child")
    ax_ent.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_benchmark(payload: dict[str, Any], out: Path) -> Path:
    """Best-so-far curves with mean ± sd bands from a benchmark JSON (benchmarks/nb201.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = payload.get("curves")
    if not isinstance(curves, dict) or not curves:
        raise ValueError("the JSON has no 'curves' (write it with python -m benchmarks.nb201)")
    fig, ax = plt.subplots(figsize=(8, 5))
    for strategy, curve in curves.items():
        mean, sd = curve["mean"], curve["sd"]
        xs = list(range(1, len(mean) + 1))
        ax.plot(xs, mean, label=strategy)
        ax.fill_between(
            xs,
            [m - s for m, s in zip(mean, sd, strict=True)],
            [m + s for m, s in zip(mean, sd, strict=True)],
            alpha=0.15,
        )
    ax.set_xscale("log")
    ax.set_xlabel("queries")
    ax.set_ylabel("test accuracy of the best-reward candidate (%)")
    seeds = payload.get("seeds", "?")
    ax.set_title(f"{payload.get('dataset', '')}: best so far, mean ± sd over {seeds} seeds")
    means = [m for c in curves.values() for m in c["mean"][9:]]
    if means:
        ax.set_ylim(min(means) - 0.5, max(means) + 0.3)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def pareto_front(points: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """The (cost, accuracy, child) points no other point beats on both: cheaper and at least as accurate."""
    front: list[tuple[float, float, int]] = []
    for cost, acc, number in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc, number))
    return front


def plot_pareto(run: RunRecord, children: list[ChildRecord], cost: str, out: Path) -> tuple[Path, list[Any]]:
    """Validation accuracy against ``cost`` (log scale) for every finished child, the Pareto front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for c in children:
        value = (c.metrics.get("cost") or {}).get(cost)
        acc = c.val_acc if c.val_acc is not None else c.reward
        if c.status == "done" and value is not None and acc is not None:
            points.append((float(value), float(acc), c.number))
    if not points:
        reported = sorted({k for c in children for k in (c.metrics.get("cost") or {})})
        raise ValueError(
            f"no finished child of run {run.id} reports the cost {cost!r}; reported: {', '.join(reported) or 'none'}"
        )
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, alpha=0.5, label="children")
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
    ax.scatter([p[0] for p in front], [p[1] for p in front], color="tab:red", s=24)
    for c_value, acc, number in front:
        ax.annotate(str(number), (c_value, acc), textcoords="offset points", xytext=(3, 3), fontsize=7)
    if min(p[0] for p in points) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(cost)
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"run {run.id} ({run.space}): accuracy against {cost}")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out, front


def plot_arch(graph: dict[str, Any], title: str, out: Path) -> Path:
    """Draw an architecture graph: nodes left to right, each edge an arc labelled with its op."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    nodes = [str(n) for n in graph["nodes"]]
    edges = [(int(i), int(j), str(label)) for i, j, label in graph["edges"]]
    for i, j, _ in edges:
        if not (0 <= i < len(nodes) and 0 <= j < len(nodes)):
            raise ValueError(f"edge {i} -> {j} refers to a node that does not exist (nodes 0..{len(nodes) - 1})")
    # the highest arc: rad * dx / 2 for the longest span, so no arc is cut off
    spans = [abs(j - i) for i, j, _ in edges if abs(j - i) > 1]
    reach = max([(0.25 + 0.1 * s) * (2.0 * s - 0.9) / 2 for s in spans] + [1.2])
    # arc3 bends in display units: keep x and y at the same scale so the reach holds in data units
    width = max(6.0, 1.9 * len(nodes))
    x_range, y_range = 2.0 * (len(nodes) - 1) + 2.4, 2 * (1.25 * reach + 0.5)
    fig, ax = plt.subplots(figsize=(width, width * y_range / x_range + 1.0))
    xs = [2.0 * k for k in range(len(nodes))]
    for k, label in enumerate(nodes):
        ax.text(
            xs[k],
            0,
            label,
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#dde8f5", "ec": "#1f4e79"},
        )
    for n, (i, j, label) in enumerate(edges):
        span = abs(j - i)
        bend = 0.0 if span == 1 else 0.25 + 0.1 * span
        rad = bend if n % 2 == 0 else -bend
        arrow = FancyArrowPatch(
            (xs[i] + 0.45, 0),
            (xs[j] - 0.45, 0),
            connectionstyle=f"arc3,rad={-rad}",
            arrowstyle="-|>",
            mutation_scale=10,
            color="#444444",
            lw=1.0,
        )
        ax.add_patch(arrow)
        if label:
            # arc3's curve peaks at half its control point's offset: rad * dx / 2 from the axis
            y = rad * (xs[j] - xs[i] - 0.9) / 2 + (0.1 if rad >= 0 else -0.1)
            ax.text((xs[i] + xs[j]) / 2, y, label, ha="center", fontsize=7, color="#7a1f1f")
    ax.set_xlim(-1.2, xs[-1] + 1.2)
    ax.set_ylim(-1.25 * reach - 0.5, 1.25 * reach + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
