"""DistBelief's training modes on Ray: convergence, stragglers and scale (issue 25).

One child, an MLP on MNIST-1D (40 inputs, two hidden ReLU layers of ``--width``, 10 classes; 3,500 training and
500 validation examples), trained through the Ray executor exactly as ``l2l search --workers-per-child K
--data-parallel MODE`` trains it, for K = 1, 2, 4 and each mode:

- sync: Adam (lr 0.001), global batch 64 split K ways, gradients all-reduced (gloo) every step;
- downpour: Adagrad on the parameter server (lr ``--server-lr``), S=2 shards, n_fetch = n_push = 1, each
  replica on minibatches of 64, work units of 4 minibatches;
- sandblaster: L-BFGS (strong Wolfe line search, 5 iterations an epoch) on the full batch, in 4K shards.

1. Convergence: validation accuracy after each epoch against the examples processed (for Sandblaster: the
   examples of every full-batch evaluation, line searches included) and the seconds trained.
2. Stragglers: K = 4 with one worker made 3 times slower (it sleeps twice its compute time after each step);
   the seconds each mode needs to reach ``--target`` validation accuracy (at the end of an epoch).
3. Scale on paper: per-step compute and transfer costs measured here with the modes' own actors, and the
   cores k busy processes really get on this (shared) machine, drive a model of each mode's throughput
   (`benchmarks.distbelief_model`); it is checked against the measured throughput at K = 1, 2, 4, then run
   for 1..128 replicas with a core each, beside DistBelief's published speedup.

python -m benchmarks.distbelief [--epochs 20] [--width 512] [--workers 1,2,4] [--target 0.5]
    [--server-lr 0.01] [--n-fetch 1] [--n-push 1]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import RESULTS, write_json

SPEC_VALUES = (("layers", "2"), ("act_0", "relu"), ("act_1", "relu"), ("width_2", "8"), ("act_2", "relu"))
MODES = ("sync", "downpour", "sandblaster")
PAPER = (81, 12.0)  # Dean et al. 2012, Fig. 3: the largest model trained 12x faster on 81 machines


def _spec(width: int) -> Any:
    from l2l.search_spaces import Spec

    values = (("width_0", str(width)), ("width_1", str(width)), ("dropout", "0.0"), ("lr", "0.001"))
    return Spec("mlp", SPEC_VALUES + values)


def train_one(mode: str, workers: int, args: argparse.Namespace, slow: tuple[float, ...] = ()) -> dict[str, Any]:
    """One child trained through the Ray executor; its curves and data-parallel record."""
    from l2l.runs.executors import ChildTask
    from l2l.runs.ray_executor import RayExecutor
    from l2l.search_spaces import Context, load_space

    space = load_space("mlp", {"dataset": "mnist1d", "widths": str(args.width), "epochs": args.epochs})
    options: dict[str, Any] = {"slow": ",".join(map(str, slow))} if slow else {}
    if mode == "downpour":
        options.update(server_lr=args.server_lr, shards=2, n_fetch=args.n_fetch, n_push=args.n_push)
    executor = RayExecutor(workers_per_child=workers, data_parallel=mode, dp_options=options, max_retries=0)
    began = time.perf_counter()
    executor.submit(space, ChildTask(0, _spec(args.width), Context(seed=args.seed, threads=1)))
    _, result = executor.next_result()
    wall = time.perf_counter() - began
    executor.shutdown()
    if not result.ok:
        raise RuntimeError(f"{mode} K={workers}: {result.error}")
    record = dict(result.info["data_parallel"])
    return {
        "mode": mode,
        "workers": workers,
        "slow": list(slow),
        "val_acc": list(result.curves["val_acc"]),
        "train_loss": list(result.curves["train_loss"]),
        "val_loss": list(result.curves["val_loss"]),
        "epoch_examples": record["epoch_examples"],
        "epoch_s": record["epoch_s"],
        "examples_per_s": record["examples_per_s"],
        "nodes": len(record["nodes"]),
        "record": {k: v for k, v in record.items() if k not in ("epoch_examples", "epoch_s")},
        "wall_s": wall,
    }


def time_to(run: dict[str, Any], target: float) -> float | None:
    """Seconds of training until the first epoch that ends at ``target`` validation accuracy or more."""
    for acc, seconds in zip(run["val_acc"], run["epoch_s"], strict=True):
        if acc >= target:
            return float(seconds)
    return None


def examples_to(run: dict[str, Any], target: float) -> int | None:
    """Examples processed until the first epoch that ends at ``target`` validation accuracy or more."""
    for acc, n in zip(run["val_acc"], run["epoch_examples"], strict=True):
        if acc >= target:
            return int(n)
    return None


def costs(width: int, workers: list[int]) -> dict[str, float]:
    """The model's costs (`benchmarks.distbelief_model.measure_costs`) for this benchmark's network."""
    import torch

    from benchmarks.distbelief_model import measure_costs
    from l2l.nas.data import load_dataset
    from l2l.nas.mlp import build_mlp
    from l2l.search_spaces import load_space

    space = load_space("mlp", {"dataset": "mnist1d", "widths": str(width)})
    data = load_dataset("mnist1d")
    torch.manual_seed(0)
    model = build_mlp(40, 10, space.layout(_spec(width)))  # type: ignore[attr-defined]
    return measure_costs(model, data.train, data.val.x, workers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--server-lr", type=float, default=0.01)
    parser.add_argument("--n-fetch", type=int, default=1)
    parser.add_argument("--n-push", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-straggler", action="store_true")
    args = parser.parse_args(argv)
    import ray

    from benchmarks.distbelief_report import report

    workers = [int(k) for k in args.workers.split(",")]
    modes = args.modes.split(",")
    ray.init(address="local", num_cpus=max(4, max(workers)), include_dashboard=False, log_to_driver=False)
    try:
        measured = costs(args.width, workers)
        runs = [train_one(mode, k, args) for mode in modes for k in workers]
        stragglers = [] if args.no_straggler else [train_one(mode, 4, args, (1.0, 1.0, 1.0, 3.0)) for mode in modes]
    finally:
        ray.shutdown()
    payload = report(args, measured, runs, stragglers, workers)
    path = write_json("distbelief", payload)
    print(f"\nwrote {path} and {RESULTS / 'distbelief_scale.png'}")


if __name__ == "__main__":
    main()
