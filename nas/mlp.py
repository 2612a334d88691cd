"""Multi-layer perceptrons built from a plain description of their layers."""

from __future__ import annotations

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
    """Hidden layers as (width, activation) pairs, plus dropout after each hidden layer."""

    hidden: tuple[tuple[int, str], ...]
    dropout: float = 0.0


def build_mlp(in_features: int, n_classes: int, layout: MLPLayout) -> nn.Sequential:
    """A classifier: flatten, then each hidden layer as Linear -> activation -> Dropout, then a linear head."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for out, act in layout.hidden:
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
        if out < 1:
            raise ValueError(f"hidden width must be >= 1, got {out}")
        layers += [nn.Linear(width, out), ACTIVATIONS[act]()]
        if layout.dropout > 0:
            layers.append(nn.Dropout(layout.dropout))
        width = out
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def linear_macs(model: nn.Module) -> int:
    """Multiply-accumulates of one forward pass of an MLP (the sum over its Linear layers)."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))
