"""Multi-layer perceptrons built from a plain description of their layers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "identity": nn.Identity,
}


@dataclass(frozen=True)
class MLPLayout:
    """Hidden layers as (width, activation) pairs, plus dropout after each hidden layer.

    ``ranks`` (one per hidden layer, or empty for all full) makes a layer low rank (`l2l.nas.lowrank`:
    "full", "1/4", ...); ``active`` (likewise) makes it a hashed sparse layer evaluating that fraction
    of its neurons per input (`l2l.nas.hashed`; 1.0 means dense); ``predicted`` (likewise) makes it a
    predicted-parameter layer learning that share of its weights (`l2l.nas.denil`: "dense", "1/10", ...),
    the first over the input's coordinates ``grid`` ((40,) for MNIST-1D, (8, 8) for digits; empty: none),
    the others with a fixed random dictionary. A layer is hashed, else predicted, else of its rank.
    """

    hidden: tuple[tuple[int, str], ...]
    dropout: float = 0.0
    ranks: tuple[str, ...] = ()
    active: tuple[float, ...] = ()
    share: str = "input"  # hashed layers: each input its own neurons, or the batch's (nas.hashed)
    predicted: tuple[str, ...] = ()
    grid: tuple[int, ...] = ()


def _hidden_layer(
    n_in: int, n_out: int, rank: str, active: float, seed: int, share: str, predicted: str, grid: tuple[int, ...]
) -> nn.Module:
    if active >= 1.0 and predicted != "dense":
        from l2l.nas import denil

        return denil.linear(n_in, n_out, predicted, shape=grid or None, seed=seed)
    if active < 1.0:
        if rank != "full":
            raise ValueError("a hidden layer is either low rank or hashed, not both")
        from l2l.nas.hashed import HashedLinear

        return HashedLinear(n_in, n_out, active=active, seed=seed, share=share)
    from l2l.nas.lowrank import linear

    return linear(n_in, n_out, rank)


def build_mlp(in_features: int, n_classes: int, layout: MLPLayout) -> nn.Sequential:
    """A classifier: flatten, then each hidden layer as Linear -> activation -> Dropout, then a linear head."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    n = len(layout.hidden)
    for name, given in (("ranks", layout.ranks), ("active", layout.active), ("predicted", layout.predicted)):
        if given and len(given) != n:
            raise ValueError(f"{name} needs one entry per hidden layer ({n}), got {len(given)}")
    ranks = layout.ranks or ("full",) * n
    active = layout.active or (1.0,) * n
    predicted = layout.predicted or ("dense",) * n
    if layout.grid and math.prod(layout.grid) != in_features:
        raise ValueError(f"input coordinates {layout.grid} do not match {in_features} input features")
    for i, (out, act) in enumerate(layout.hidden):
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
        if out < 1:
            raise ValueError(f"hidden width must be >= 1, got {out}")
        grid = layout.grid if i == 0 else ()
        hidden = _hidden_layer(width, out, ranks[i], active[i], i, layout.share, predicted[i], grid)
        layers += [hidden, ACTIVATIONS[act]()]
        if layout.dropout > 0:
            layers.append(nn.Dropout(layout.dropout))
        width = out
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def linear_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass of a plain MLP (the sum over its Linear layers); for
    layers with their own cost (hashed) use `l2l.nas.cost.count_macs`."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
