"""Predicted parameters (Denil et al. 2013) against dense and against low rank with the same learned budget.

Four networks, each with one layer where Denil's smoothness prior applies (`l2l.nas.denil`):

- ``mnist1d-mlp``: 40-256-256-10 MLP; the first layer over MNIST-1D's 40 time positions.
- ``digits-mlp``: 64-128-128-10 MLP; the first layer over the 8x8 pixel grid.
- ``mnist1d-cnn``: three convolutions (kernel 21, 5, 5; 32 filters each, batch norm, ReLU), global average
  pooling, linear (`l2l.nas.macro.MacroNet`); the first layer's filters over their 21 taps.
- ``digits-cnn``: the same on 8x8 images with kernels 7x7, 3x3, 3x3; the first filters over 7x7 taps.
- ``mnist1d-mlp-hidden``: the MNIST-1D MLP's middle layer (no topology: a random dictionary).
- ``mnist1d-cnn-middle``: the MNIST-1D CNN's second convolution (32 -> 32, 5 taps), each filter over its
  (channel, tap) values together: SE along the taps, none across channels (`PredictedConv`'s ``joint``).

Per network, three versions of that layer: ``dense``; ``denil`` learning 1/10 of each weight vector
(>= 90% predicted); ``lowrank`` (both factors learned, `l2l.nas.lowrank`) with the largest rank whose
learned parameters do not exceed the Denil layer's. The kernel and the columns (``--columns``: grids that
just cover the coordinates, the layer's default, or one grid per unit) are chosen per network by validation
accuracy at seed 100 (never a reported seed) among the SE kernel at each of ``--lengths`` and the paper's
data-driven kernel, the covariance of the layer's inputs over the training split (over the input
coordinates, or over every patch a convolution's filter reads; ``--no-empirical`` leaves it out); the ridge is fixed at
`l2l.nas.denil.DEFAULT_RIDGE`. Then seeds 0-2 (``--seeds``) train each version with Adam (lr 0.003, batch
64) for ``--epochs`` epochs and report test accuracy.

python -m benchmarks.denil [--epochs 30] [--seeds 0 1 2] [--tasks mnist1d-mlp ...] [--columns cover unit] [--name denil]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks.common import mean_sd, print_table, write_json
from l2l.nas import denil
from l2l.nas.cost import count_macs, count_parameters
from l2l.nas.data import load_dataset
from l2l.nas.macro import MacroLayer, MacroNet
from l2l.nas.mlp import MLPLayout, build_mlp
from l2l.nas.train import TrainConfig, train_classifier

SHARE = "1/10"  # the share learned in the comparison with low rank: >= 90% of the weight predicted
CURVE = ("1/4", "1/2")  # Denil at larger learned shares, to show where the loss starts
VALIDATION_SEED = 100
EMPIRICAL = "empirical"  # the data-driven kernel: the covariance of the layer's inputs over the training split
Builder = Callable[[str, int, float, int, torch.Tensor | None, int | None], tuple[nn.Module, nn.Module]]
Kernel = float | str  # an SE length scale, or EMPIRICAL
COLUMNS = {"cover": None, "unit": 0}  # columns whose grids cover the coordinates (the layer's default), one per unit


def task(
    dataset: str,
    build: Builder,
    points: tuple[int, ...],
    width: int,
    smooth: bool,
    covariance: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """A network, the coordinates of its predicted layer's weight vectors (``points``), and the rank of a
    low-rank layer learning no more than the Denil layer at `SHARE` (``r (fan_in + width) <= width a``; one
    input channel, so the fan-in is the number of points)."""

    def learned(share: str) -> int:  # what a layer is asked to learn per weight vector
        return denil.learned_points(share, math.prod(points)) or math.prod(points)

    grid = denil.grid_shape(points, learned(SHARE))  # what it learns: a 2-D grid can hold fewer points
    rank = max(1, width * math.prod(grid) // (math.prod(points) + width))
    return {
        "dataset": dataset,
        "build": build,
        "learned": learned,
        "rank": rank,
        "smooth": smooth,
        "covariance": covariance,  # training inputs -> the empirical kernel over ``points``
    }


def mlp_task(dataset: str, width: int, grid: tuple[int, ...], hidden: bool = False) -> dict[str, Any]:
    """An MLP n-width-width-10 whose first layer (over ``grid``) or, with ``hidden``, middle layer (no
    topology: a random dictionary) is the one compared."""
    n_in = math.prod(grid)
    at = 3 if hidden else 1

    def build(
        kind: str, a: int, length: float, rank: int, cov: torch.Tensor | None, columns: int | None
    ) -> tuple[nn.Module, nn.Module]:
        ranks = ["full", "full"]
        if kind == "lowrank":
            ranks[at // 2] = str(rank)
        model = build_mlp(n_in, 10, MLPLayout(hidden=((width, "relu"), (width, "relu")), ranks=tuple(ranks)))
        if kind == "denil":
            fan_in = width if hidden else n_in
            shape = None if hidden else grid
            cols = width if columns == 0 else columns
            model[at] = denil.PredictedLinear(
                fan_in, width, a, shape=shape, columns=cols, length=length, covariance=cov
            )
        return model, model[at]

    points = (width,) if hidden else grid
    return task(dataset, build, points, width, not hidden, None if hidden else denil.empirical_covariance)


def cnn_task(dataset: str, kernels: tuple[tuple[int, int], ...], shape: tuple[int, ...], at: int = 0) -> dict[str, Any]:
    """Three convolutions of 32 filters (`l2l.nas.macro.MacroNet`); the first one's filters are compared, or
    with ``at`` 1 the second one's (1-D only), each filter over all its (channel, tap) values together
    (`PredictedConv`'s ``joint``): a 5-tap filter learning one tap per channel would predict only 80%."""
    k0 = kernels[at][1:] if len(shape) == 2 else kernels[at]
    c_in = shape[0] if at == 0 else 32
    pad = tuple(k // 2 for k in k0)

    def build(
        kind: str, a: int, length: float, rank: int, cov: torch.Tensor | None, columns: int | None
    ) -> tuple[nn.Module, nn.Module]:
        layers = [
            MacroLayer(k, 32, 1, (i - 1,) if i else (), str(rank) if kind == "lowrank" and i == at else "full")
            for i, k in enumerate(kernels)
        ]
        model = MacroNet(layers, shape, 10)
        block = model.blocks[at]
        assert isinstance(block, nn.Sequential)
        if kind == "denil":
            cols = 32 if columns == 0 else columns
            block[0] = denil.PredictedConv(
                len(k0), c_in, 32, k0, a, 1, pad, columns=cols, length=length, bias=False, covariance=cov, joint=at > 0
            )
        return model, block[0]

    def covariance(x: torch.Tensor) -> torch.Tensor:
        return denil.patch_covariance(x.reshape(len(x), *shape), k0, pad)

    if at == 0:
        return task(dataset, build, k0, 32, True, covariance)
    return task(dataset, build, (c_in, *k0), 32, True)  # the inputs are learned features: no empirical kernel


TASKS: dict[str, Callable[[], dict[str, Any]]] = {
    "mnist1d-mlp": lambda: mlp_task("mnist1d", 256, (40,)),
    "digits-mlp": lambda: mlp_task("digits", 128, (8, 8)),
    "mnist1d-cnn": lambda: cnn_task("mnist1d", ((1, 21), (1, 5), (1, 5)), (1, 40)),
    "digits-cnn": lambda: cnn_task("digits", ((7, 7), (3, 3), (3, 3)), (1, 8, 8)),
    "mnist1d-mlp-hidden": lambda: mlp_task("mnist1d", 256, (40,), hidden=True),
    "mnist1d-cnn-middle": lambda: cnn_task("mnist1d", ((1, 21), (1, 5), (1, 5)), (1, 40), at=1),
}


def layer_counts(layer: nn.Module) -> tuple[int, int]:
    """(learned, predicted) values of a layer's weight and bias."""
    if isinstance(layer, denil.PredictedLinear | denil.PredictedConv):
        return layer.learned(), layer.predicted()
    return sum(p.numel() for name, p in layer.named_parameters() if not name.endswith("bias")), 0


def run(
    task: dict[str, Any], kind: str, share: str, kernel: Kernel, seed: int, epochs: int, columns: str = "cover"
) -> dict[str, Any]:
    """Train one version at one seed; ``kernel`` is the Denil layer's SE length scale or `EMPIRICAL`,
    ``columns`` a key of `COLUMNS`."""
    data = load_dataset(task["dataset"])
    torch.manual_seed(seed)
    cov = task["covariance"](data.train.x) if kernel == EMPIRICAL and kind == "denil" else None
    length = denil.DEFAULT_LENGTH if isinstance(kernel, str) else kernel
    model, layer = task["build"](kind, task["learned"](share), length, task["rank"], cov, COLUMNS[columns])
    config = TrainConfig(epochs=epochs, lr=0.003, batch_size=64, stop_hopeless=False)
    out = train_classifier(model, data, config, seed=seed)
    learned, predicted = layer_counts(layer)
    return {
        "val_acc": out.val_acc,
        "test_acc": out.test_acc,
        "params": count_parameters(model),
        "macs": count_macs(model, data.val.x[:1]),
        "layer_learned": learned,  # values of the weight (matrix or filters); a bias is extra
        "layer_bias": sum(p.numel() for name, p in layer.named_parameters() if name.endswith("bias")),
        "layer_predicted": predicted,
        "layer_macs": count_macs(layer, example_input(model, layer, data.val.x[:1])),
    }


def preference(choice: tuple[Kernel, str], val: dict[tuple[Kernel, str], float]) -> tuple[float, float, bool]:
    """Validation accuracy, ties to the length nearest 1 (the empirical kernel last), then to covering columns."""
    kernel, columns = choice
    return val[choice], -abs(kernel - 1.0) if isinstance(kernel, float) else -1e9, columns == "cover"


def example_input(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input ``layer`` receives when ``model`` runs on ``x``."""
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
    model.eval()
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--lengths", type=float, nargs="+", default=[0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument(
        "--empirical",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also consider the empirical kernel (the covariance of the layer's inputs) in the validation choice",
    )
    parser.add_argument(
        "--columns",
        nargs="+",
        default=list(COLUMNS),
        choices=list(COLUMNS),
        help="columns of alpha points to choose among on validation: 'cover' (enough grids to cover the coordinates, "
        "the layer's default), 'unit' (one jittered grid per unit or filter)",
    )
    parser.add_argument("--name", default="denil", help="writes results/NAME.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    payload: dict[str, Any] = {"epochs": args.epochs, "seeds": args.seeds, "share_learned": SHARE, "tasks": {}}
    rows = []
    for name in args.tasks:
        task, started = TASKS[name](), time.perf_counter()
        kernel: Kernel = denil.DEFAULT_LENGTH
        columns = "cover"
        entry: dict[str, Any] = {"lowrank_rank": task["rank"], "versions": {}}
        if task["smooth"]:  # kernel (SE length or empirical) and columns, on validation data at a seed not reported
            kernels: list[Kernel] = list(args.lengths)
            if args.empirical and task["covariance"] is not None:
                kernels.append(EMPIRICAL)
            candidates = [(k, c) for c in args.columns for k in kernels]
            val = {
                (k, c): run(task, "denil", SHARE, k, VALIDATION_SEED, args.epochs, c)["val_acc"] for k, c in candidates
            }
            kernel, columns = max(candidates, key=lambda kc: preference(kc, val))
            entry.update(validation={f"{k}/{c}": v for (k, c), v in val.items()}, length=kernel, columns=columns)
            print(name, "validation accuracy by kernel/columns", val, "->", kernel, columns, flush=True)
        versions = [("dense", "dense"), ("denil", SHARE), ("lowrank", "dense")] + [("denil", c) for c in CURVE]
        for kind, share in versions:
            runs = [run(task, kind, share, kernel, seed, args.epochs, columns) for seed in args.seeds]
            accs = [r["test_acc"] for r in runs]
            label = {"dense": "dense", "lowrank": f"low rank {task['rank']}"}.get(kind, f"Denil {share}")
            entry["versions"][label] = {**{k: v for k, v in runs[0].items() if "acc" not in k}, "test_acc": accs}
            mean, sd = mean_sd(accs)
            r0 = runs[0]
            share_predicted = r0["layer_predicted"] / (r0["layer_predicted"] + r0["layer_learned"])
            rows.append(
                [
                    name,
                    label,
                    f"{r0['layer_learned']:,}" + (f" + {r0['layer_bias']}" if r0["layer_bias"] else ""),
                    f"{r0['layer_predicted']:,} ({share_predicted:.1%})",
                    f"{r0['layer_macs']:,}",
                    f"{r0['params']:,}",
                    f"{r0['macs']:,}",
                    f"{mean:.4f} ± {sd:.4f}",
                ]
            )
            print(rows[-1], f"{time.perf_counter() - started:.0f}s", flush=True)
        payload["tasks"][name] = entry
    print(f"{args.epochs} epochs, seeds {args.seeds}; Denil layers learn {SHARE} of each weight vector")
    header = ["network", "layer", "learned (+ bias)", "predicted (of W)", "layer MACs", "model params", "model MACs"]
    header.append("test acc")
    print_table(header, rows)
    print(f"wrote {write_json(args.name, payload)}")


if __name__ == "__main__":
    main()
