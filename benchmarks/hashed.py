"""Hashed sparse layers against the dense layer: multiplications, wall time and accuracy.

1. The layer alone: 256 inputs -> 4096 neurons, batch 128, forward and backward, median of 20 repeats,
   for the dense `nn.Linear` and for `HashedLinear` (SimHash, 8 tables of 6 bits) with 20% and 5% of
   the neurons active, each input choosing its own (SLIDE) or the batch sharing the most-voted ones.
   Multiply-adds per input count the evaluated neurons and the hashing.
2. Accuracy: an MLP 40 -> 256 -> 4096 -> 10 (ReLU) on MNIST-1D whose 4096-wide layer is dense, or
   hashed at 20% or 5%; ``--epochs`` epochs with Adam, seeds 0-2; test accuracy and training time.

python -m benchmarks.hashed [--epochs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from benchmarks.common import mean_sd, print_table, write_json
from l2l.nas.cost import count_macs
from l2l.nas.data import load_dataset
from l2l.nas.hashed import HashedLinear
from l2l.nas.mlp import MLPLayout, build_mlp
from l2l.nas.train import TrainConfig, train_classifier

SETTINGS = (
    ("dense", 1.0, "input"),
    ("hashed 20%, per input", 0.2, "input"),
    ("hashed 5%, per input", 0.05, "input"),
    ("hashed 20%, per batch", 0.2, "batch"),
    ("hashed 5%, per batch", 0.05, "batch"),
)
SEEDS = (0, 1, 2)


def layer_time(layer: nn.Module, x: torch.Tensor, repeats: int = 20) -> tuple[float, float]:
    """Median seconds of a forward pass, and of forward plus backward."""
    fwd, both = [], []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        out = layer(x)
        mid = time.perf_counter()
        out.square().sum().backward()
        end = time.perf_counter()
        fwd.append(mid - started)
        both.append(end - started)
        layer.zero_grad(set_to_none=True)
    return statistics.median(fwd[2:]), statistics.median(both[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(128, 256)
    layer_rows: list[list[str]] = []
    payload: dict[str, dict[str, object]] = {"layer": {}, "mlp": {}}
    dense_macs = dense_both = 0.0
    for name, active, share in SETTINGS:
        layer = nn.Linear(256, 4096) if active == 1.0 else HashedLinear(256, 4096, active=active, share=share)
        macs = count_macs(layer, x[:1])
        fwd, both = layer_time(layer, x)
        if active == 1.0:
            dense_macs, dense_both = macs, both
        payload["layer"][name] = {"macs_per_input": macs, "forward_s": fwd, "forward_backward_s": both}
        layer_rows.append(
            [
                name,
                f"{macs:,}",
                f"{macs / dense_macs:.3f}",
                f"{fwd * 1e3:.2f}",
                f"{both * 1e3:.2f}",
                f"{both / dense_both:.2f}",
            ]
        )
        print(layer_rows[-1], flush=True)
    data = load_dataset("mnist1d")
    mlp_rows = []
    for name, active, share in SETTINGS:
        layout = MLPLayout(hidden=((256, "relu"), (4096, "relu")), active=(1.0, active), share=share)
        accs, times = [], []
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = build_mlp(40, data.n_classes, layout)
            config = TrainConfig(epochs=args.epochs, lr=0.003, batch_size=64, stop_hopeless=False)
            out = train_classifier(model, data, config, seed=seed)
            accs.append(out.test_acc)
            times.append(out.train_time)
        macs = count_macs(model, data.val.x[:1])
        mean, sd = mean_sd(accs)
        payload["mlp"][name] = {"test_acc": accs, "train_time_s": times, "macs": macs}
        mlp_rows.append([name, f"{macs:,}", f"{mean:.4f} +- {sd:.4f}", f"{statistics.mean(times):.1f}"])
        print(mlp_rows[-1], flush=True)
    print("Layer 256 -> 4096, batch 128, median of 20 (single thread)")
    print_table(["layer", "MACs / input", "vs dense", "forward ms", "fwd+bwd ms", "fwd+bwd vs dense"], layer_rows)
    print(f"MNIST-1D, MLP 40-256-4096-10, {args.epochs} epochs, seeds 0-2")
    print_table(["4096-wide layer", "model MACs / input", "test accuracy", "train s"], mlp_rows)
    print(f"wrote {write_json('hashed', payload)}")


if __name__ == "__main__":
    main()
