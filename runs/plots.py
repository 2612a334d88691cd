"""Plots of a run drawn with matplotlib (Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path

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
