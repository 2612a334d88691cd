"""What users look at after an optimizer search: update heatmaps and training curves against tuned baselines."""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from l2l.optsearch.functional import Value, evaluate
from l2l.optsearch.language import Rule, to_formula
from l2l.optsearch.simplify import simplified_rule
from l2l.optsearch.task import BASELINE_LRS, RuleDiverged, Task, baseline_factory, rule_factory, sweep
from l2l.optsearch.vocabulary import OPERANDS


def update_surface(rule: Rule, g: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """The update (without lr) for gradient ``g`` and momentum ``m`` (same-shape grids).

    Other operands take the representative values their `l2l.optsearch.vocabulary` entries give:
    v = (g^2 + m^2) / 2 (a running mean of g^2 that has seen both), the mean of g^3 = g^3, Adam's update
    m / (sqrt(v) + eps), RMSProp's g / (sqrt(v) + eps), w = 0, no noise, decays at their start (1).
    """

    def operand(name: str) -> Value:
        return OPERANDS[name].surface(g, m)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # drop() is random: draw the same mask every time
        out = evaluate(rule, operand, [g])
    return torch.full_like(g, out) if isinstance(out, float) else out[0]


def plot_heatmaps(
    rules: Sequence[Rule], path: Path, limit: float = 1.0, n: int = 101, labels: Sequence[str] | None = None
) -> Path:
    """Write `heatmaps_figure` to ``path``."""
    import matplotlib.pyplot as plt

    fig = heatmaps_figure(rules, limit, n, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmaps_figure(
    rules: Sequence[Rule], limit: float = 1.0, n: int = 101, labels: Sequence[str] | None = None
) -> Any:
    """One heatmap per rule of the update against g (x axis) and m (y axis), as Bello et al.'s figures; each
    panel titled by the rule's simplified formula (as `l2l optimizers top` prints it), after its label where
    ``labels`` gives one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = torch.linspace(-limit, limit, n)
    m, g = torch.meshgrid(axis, axis, indexing="ij")
    fig, axes = plt.subplots(1, len(rules), figsize=(4.2 * len(rules), 4.0), squeeze=False)
    for i, (ax, rule) in enumerate(zip(axes[0], rules, strict=True)):
        z = update_surface(rule, g, m).nan_to_num(0.0, posinf=0.0, neginf=0.0)
        bound = float(torch.quantile(z.abs().flatten(), 0.98)) or float(z.abs().max()) or 1.0
        im = ax.imshow(
            z.numpy(),
            origin="lower",
            extent=(-limit, limit, -limit, limit),
            cmap="RdBu_r",
            vmin=-bound,
            vmax=bound,
            aspect="auto",
        )
        ax.set_xlabel("gradient g")
        ax.set_ylabel("momentum m")
        formula = to_formula(simplified_rule(rule))
        ax.set_title(_short(formula if labels is None else f"{labels[i]}: {formula}"), fontsize=8)
        if float(z.max() - z.min()) == 0.0:  # one colour would read as a drawing that failed: say what it shows
            note = flat_note(rule, float(z[0, 0]))
            ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})  # fmt: skip
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def flat_note(rule: Rule, value: float, width: int = 34) -> str:
    """What a heatmap of one colour shows: the same update ``value`` at every (g, m), and why: the rule reads
    nothing of g and m (what it reads instead, with the value each takes here), or what it reads of them cancels
    out; in lines of at most ``width`` characters (a panel's width)."""
    grid = "(g,\u00a0m)"  # one word: a line break inside it read as "(g," and "m)"
    return textwrap.fill(f"the same update, {value:.3g}, at every {grid}: {_why_flat(rule)}", width)


_NO_G_OR_M = {"one", "two", "noise"}  # with the weights' shares and the schedules: operands that ignore g and m


def _why_flat(rule: Rule) -> str:
    """Why a rule's update is the same at every (g, m), from what its units read (not its learning-rate decay,
    which the surface leaves out)."""
    reads = sorted(dataclasses.replace(rule, decay=None).operands())
    weights = [op for op in reads if op.endswith("w")]  # 1e-4w .. 1e-1w: a share of the weights
    schedules = [op for op in reads if OPERANDS[op].schedule is not None]
    if any(op not in _NO_G_OR_M and op not in weights and op not in schedules for op in reads):
        return "what it reads of g and m cancels out"
    shown = [op for op in reads if op not in ("one", "two")]  # constants go without saying
    if not shown:
        return "it reads only constants"
    here = [text for ops, text in ((weights, "w = 0"), (schedules, "schedules at their start, 1"),
                                   (["noise"] if "noise" in reads else [], "noise = 0")) if ops]  # fmt: skip
    return f"it reads only {', '.join(shown)}" + (f" (here {'; '.join(here)})" if here else "")


def _short(text: str, width: int = 48) -> str:
    return textwrap.fill(text, width, break_long_words=False)  # lines of at most ``width`` characters


@dataclass(frozen=True)
class Curve:
    """One optimizer's training at its best learning rate on one task."""

    label: str
    task: str
    lr: float | None
    val_acc: float | None
    test_acc: float | None
    curves: dict[str, list[float]]
    note: str = ""


BASELINES = ("sgd-momentum", "adam")


def tuned_curves(
    rules: Sequence[tuple[str, Rule]],
    task: Task,
    lrs: Sequence[float] = BASELINE_LRS,
    on_start: Callable[[str], None] | None = None,
) -> list[Curve]:
    """Each rule and each baseline (SGD with momentum, Adam) trained at its best learning rate on ``task``;
    ``on_start(label)`` is told before each optimizer's sweep (a progress display)."""
    out: list[Curve] = []
    entries: list[tuple[str, Any]] = [(label, rule_factory(rule, task)) for label, rule in rules]
    entries += [(name, baseline_factory(name)) for name in BASELINES]
    for label, factory in entries:
        if on_start is not None:
            on_start(label)
        try:
            s = sweep(factory, task, lrs=lrs)
        except RuleDiverged as exc:
            out.append(Curve(label, task.name, None, None, None, {}, note=str(exc)))
            continue
        best = s.best
        out.append(Curve(label, task.name, s.best_lr, best.val_acc, best.test_acc, dict(best.curves)))
    return out


def plot_curves(results: dict[str, list[Curve]], path: Path) -> Path:
    """Training loss and validation accuracy per epoch, one column per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 7.0), squeeze=False)
    for col, (task, curves) in enumerate(results.items()):
        for c in curves:
            if not c.curves:
                continue
            epochs = range(1, len(c.curves["val_acc"]) + 1)
            style = "--" if c.label in ("sgd-momentum", "adam") else "-"
            short = len(c.curves["val_acc"]) < len(max((d.curves.get("val_acc", []) for d in curves), key=len))
            label = f"{c.label} (lr {c.lr:g}){': stopped early' if short else ''}"
            marker = "o" if len(epochs) < 3 else None  # a curve of one point is a point: draw it
            axes[0][col].plot(epochs, c.curves["train_loss"], style, marker=marker, label=label)
            axes[1][col].plot(epochs, c.curves["val_acc"], style, marker=marker, label=label)
        axes[0][col].set_title(f"{task}: training loss")
        axes[0][col].set_yscale("log")
        axes[1][col].set_title(f"{task}: validation accuracy")
        axes[1][col].set_xlabel("epoch")
        for ax in (axes[0][col], axes[1][col]):
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[1][col].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
