"""Plots of a scoreboard (`l2l optimizers evaluate -o board.json`): a performance profile and per-task curves."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

from l2l.optsearch.board import error, interval_text, performance_profile

_STYLES = ["-", "--", "-.", ":"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def profile_taus(board: dict[str, Any], n: int = 200) -> list[float]:
    """Factors from 1 to a little past the largest finite ratio to the best (at least 2), log-spaced."""
    labels = [o["label"] for o in board["optimizers"]]
    worst = 2.0
    for task in board["cells"]:
        errors = [error(board, task, label) for label in labels]
        best = min(errors)
        finite = [e / best for e in errors if math.isfinite(e) and best > 0]
        worst = max([worst, *finite])
    top = math.log(worst * 1.1)
    return [math.exp(top * i / (n - 1)) for i in range(n)]


def plot_profile(board: dict[str, Any], path: Path) -> Path:
    """Share of tasks on which each optimizer's test error is within a factor tau of the best one's."""
    plt = _pyplot()
    taus = profile_taus(board)
    profile = performance_profile(board, taus)
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    for i, (label, shares) in enumerate(profile.items()):  # styles and widths differ: equal lines stay visible
        style, width = _STYLES[i % 4], 2.8 - 0.5 * (i % 4)
        ax.step(taus, shares, where="post", linestyle=style, color=f"C{i % 10}", linewidth=width, label=label)
    ax.set_xscale("log")
    ax.set_xlim(1.0, taus[-1])
    ticks: list[float] = []
    for t in (1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0):
        if t <= taus[-1] and (not ticks or math.log(t / ticks[-1]) >= math.log(taus[-1]) / 12):
            ticks.append(t)  # ticks apart enough not to run into each other on this range
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (test error / best test error on the task)")
    ax.set_ylabel("share of tasks within tau of the best")
    names = ", ".join(board["cells"])
    seeds = f"{board['seeds']} seed{'s' * (board['seeds'] != 1)}"
    ax.set_title(f"performance profile over {len(board['cells'])} tasks, {seeds}", fontsize=10)
    ax.text(0.99, 0.02, _wrap(names, 70), transform=ax.transAxes, ha="right", va="bottom", fontsize=6, alpha=0.7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # off the lines
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _wrap(text: str, width: int) -> str:
    return textwrap.fill(text, width, break_long_words=False)  # lines of at most ``width`` characters


def plot_task_curves(board: dict[str, Any], path: Path, cols: int = 3) -> Path:
    """Validation metric against steps at each optimizer's tuned setting (mean over seeds), one panel per
    task; the legend gives the chosen lr and the final test mean ± 95% CI."""
    plt = _pyplot()
    tasks = board["tasks"]
    cols = max(1, min(cols, len(tasks)))  # one task: one panel, not a third of the figure
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.5 * rows), squeeze=False)
    labels = [o["label"] for o in board["optimizers"]]
    colors = {label: f"C{i % 10}" for i, label in enumerate(labels)}  # one colour per optimizer in every panel
    for ax, task in zip(axes.flat, tasks, strict=False):
        row = board["cells"][task["name"]]
        for i, label in enumerate(label for label in labels if label in row):
            cell = row[label]
            curves = cell.get("curves") or {}
            if cell["failed"] or not curves:
                ax.plot([], [], color=colors[label], label=f"{label}: failed")
                continue
            ci = f" {interval_text(cell, task['metric'], 3)}".rstrip()  # clipped to the metric's range, as the table
            edge = "!" if cell.get("lr_at_edge") else ""
            if cell.get("weight_decay") is not None:
                edge += f", wd {cell['weight_decay']:g}{'!' if cell.get('wd_at_edge') else ''}"
            ax.plot(
                curves["step"],
                curves["val_metric"],
                _STYLES[i // 10 % 4],
                color=colors[label],
                marker="o",
                markersize=3,
                label=f"{label} (lr {cell['lr']:.2g}{edge}): {cell['test_mean']:.3f}{ci}",
            )
        arrow = "higher is better" if task["higher_is_better"] else "lower is better"
        ax.set_title(f"{task['name']} ({task.get('suite', '')})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(f"validation {task['metric']} ({arrow})", fontsize=8)
        if task["metric"] in ("mse",):
            ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        title = "test mean ± 95% CI" if board["seeds"] != 1 else "test (one seed)"
        ax.legend(fontsize=6.5, title=title, title_fontsize=6.5)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    over = f"mean over {board['seeds']} seeds" if board["seeds"] != 1 else "one seed"
    fig.suptitle(f"tuned optimizers, {over}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
