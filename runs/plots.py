"""Plots of a run drawn with matplotlib (Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runs.store import ChildRecord, RunRecord, UpdateRecord


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
