"""Low-rank layers: test accuracy against parameter count on MNIST-1D, for ranks 1 to full.

The model is an MLP 40 -> 256 -> 256 -> 10 (ReLU) whose middle 256 x 256 layer is factored as U V of
rank r (`l2l.nas.lowrank`); everything else stays dense. Each rank trains ``--epochs`` epochs with Adam
(lr 0.003, batch 64) for seeds 0-2; the table gives the parameters and multiply-adds of the whole
model and of the factored layer, and mean test accuracy.

python -m benchmarks.lowrank [--epochs 30]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import mean_sd, print_table, write_json
from l2l.nas.cost import count_macs, count_parameters
from l2l.nas.data import load_dataset
from l2l.nas.mlp import MLPLayout, build_mlp
from l2l.nas.train import TrainConfig, train_classifier

RANKS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SEEDS = (0, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist1d")
    rows, payload = [], {}
    for rank in RANKS:
        label = "full" if rank == 256 else str(rank)
        layout = MLPLayout(hidden=((256, "relu"), (256, "relu")), ranks=("full", label))
        accs, started = [], time.perf_counter()
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = build_mlp(40, data.n_classes, layout)
            config = TrainConfig(epochs=args.epochs, lr=0.003, batch_size=64, stop_hopeless=False)
            accs.append(train_classifier(model, data, config, seed=seed).test_acc)
        layer = model[3]
        params, macs = count_parameters(model), count_macs(model, data.val.x[:1])
        layer_params = count_parameters(layer)
        mean, sd = mean_sd(accs)
        payload[label] = {"params": params, "macs": macs, "layer_params": layer_params, "test_acc": accs}
        rows.append([label, f"{layer_params:,}", f"{params:,}", f"{macs:,}", f"{mean:.4f} +- {sd:.4f}"])
        print(rows[-1], f"{time.perf_counter() - started:.0f}s", flush=True)
    print(f"MNIST-1D, MLP 40-256-256-10 with the middle layer of rank r, {args.epochs} epochs, seeds 0-2")
    print_table(["rank", "layer params", "model params", "model MACs", "test accuracy"], rows)
    print(f"wrote {write_json('lowrank', payload)}")


if __name__ == "__main__":
    main()
