"""Tables, the model's check and the scale plot of `benchmarks.distbelief`."""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from benchmarks.common import RESULTS, print_table
from benchmarks.distbelief import PAPER, examples_to, time_to
from benchmarks.distbelief_model import calibrate, simulate

SCALE = (1, 2, 4, 8, 16, 32, 64, 81, 128)


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def report(
    args: argparse.Namespace,
    costs: dict[str, float],
    runs: list[dict[str, Any]],
    stragglers: list[dict[str, Any]],
    workers: list[int],
) -> dict[str, Any]:
    """Print every table; return the JSON payload."""
    print(f"\n## Measured costs (width {args.width}: {int(costs['params'])} parameters)\n")
    print_table(["cost", "value"], [[k, f"{v:.4g}"] for k, v in costs.items()])

    print(f"\n## Convergence: validation accuracy by epoch (examples processed, seconds), target {args.target}\n")
    rows = []
    for r in runs:
        curve = " ".join(f"{a:.2f}" for a in r["val_acc"])
        rows.append(
            [
                r["mode"],
                r["workers"],
                r["nodes"],
                f"{r['val_acc'][-1]:.3f}",
                f"{r['train_loss'][0]:.3f} -> {r['train_loss'][-1]:.3f}",
                f"{r['val_loss'][-1]:.3f}",
                r["epoch_examples"][-1],
                f"{r['epoch_s'][-1]:.1f}",
                f"{r['examples_per_s']:.0f}",
                _f(examples_to(r, args.target)),
                _f(time_to(r, args.target)),
                curve,
            ]
        )
    print_table(
        [
            "mode",
            "K",
            "nodes",
            "final val acc",
            "train loss",
            "val loss",
            "examples",
            "train s",
            "examples/s",
            "examples to target",
            "s to target",
            "val acc by epoch",
        ],
        rows,
    )

    strag: dict[str, Any] = {}
    if stragglers:
        print(f"\n## Stragglers: K=4, one worker 3x slower; seconds to {args.target} validation accuracy\n")
        sync_t = time_to(next(r for r in stragglers if r["mode"] == "sync"), args.target)
        rows = []
        for r in stragglers:
            t = time_to(r, args.target)
            ratio = t / sync_t if t is not None and sync_t else None
            strag[r["mode"]] = {"seconds_to_target": t, "ratio_to_sync": ratio}
            extra = {k: r["record"].get(k) for k in ("backups", "backups_won", "staleness_mean", "staleness_max")}
            rows.append(
                [
                    r["mode"],
                    _f(t),
                    _f(ratio, 2),
                    "yes" if ratio is not None and ratio <= 0.6 else "no",
                    f"{r['val_acc'][-1]:.3f}",
                    f"{r['examples_per_s']:.0f}",
                    ", ".join(f"{k}={_f(v)}" for k, v in extra.items() if v is not None),
                ]
            )
        print_table(["mode", "s to target", "/ sync", "<= 0.6", "final val acc", "examples/s", "notes"], rows)

    blasts = [r for r in runs if r["mode"] == "sandblaster"]
    if blasts:  # how many evaluations L-BFGS makes an epoch: the algorithm's, counted in the runs
        costs["evals_per_epoch"] = statistics.fmean(r["record"]["evaluations"] / len(r["val_acc"]) for r in blasts)
    calibrate(runs, costs)
    cores = ", ".join(f"K={k}: {costs[f'eff_{k}']:.2f}" for k in workers)
    print(f"\n## The throughput model against the measurements (cores the workers got: {cores})\n")
    print("calibrated on the K=1 runs, so not checks: sandblaster K=1 (coordinator), downpour K=1 (overhead)\n")
    rows, checks = [], []
    for r in runs:
        predicted = simulate(r["mode"], r["workers"], costs)
        error = predicted / r["examples_per_s"] - 1 if r["examples_per_s"] else None
        checks.append({"mode": r["mode"], "workers": r["workers"], "measured": r["examples_per_s"], "model": predicted})
        rows.append(
            [r["mode"], r["workers"], f"{r['examples_per_s']:.0f}", f"{predicted:.0f}", _f(error and 100 * error, 2)]
        )
    print_table(["mode", "K", "measured examples/s", "model examples/s", "error %"], rows)

    print("\n## Scale on paper: modelled speedup over one replica, one core per replica\n")
    speedups = {
        m: [simulate(m, k, costs, on_paper=True) / simulate(m, 1, costs, on_paper=True) for k in SCALE]
        for m in ("sync", "downpour", "sandblaster")
    }
    speedups["downpour, S=k/4 shards"] = [
        simulate("downpour", k, costs, on_paper=True, shards=max(2, k // 4)) / simulate("downpour", 1, costs, True)
        for k in SCALE
    ]
    speedups["downpour (S=2)"] = speedups.pop("downpour")
    rows = [[k] + [f"{speedups[m][i]:.1f}" for m in speedups] for i, k in enumerate(SCALE)]
    rows.append([f"{PAPER[0]} (DistBelief, published)", f"{PAPER[1]:g} (model parallel, 1 replica)", "", "", ""])
    print_table(["replicas", *speedups], rows)
    _plot(speedups)
    return {
        "args": vars(args),
        "costs": costs,
        "runs": runs,
        "stragglers": stragglers,
        "straggler_summary": strag,
        "model_check": checks,
        "scale": {"replicas": list(SCALE), **speedups, "paper": {"machines": PAPER[0], "speedup": PAPER[1]}},
        "workers": workers,
    }


def _plot(speedups: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, values in speedups.items():
        ax.plot(SCALE, values, marker="o", label=f"{mode} (model)")
    ax.plot(SCALE, SCALE, color="grey", linestyle=":", label="linear")
    ax.scatter([PAPER[0]], [PAPER[1]], color="black", marker="*", s=120, zorder=5, label="DistBelief: 12x at 81")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("replicas (one core each)")
    ax.set_ylabel("speedup over one replica")
    ax.legend(fontsize=8)
    ax.set_title("MNIST-1D MLP: modelled speedup of l2l's DistBelief modes")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "distbelief_scale.png", dpi=100)
    plt.close(fig)
