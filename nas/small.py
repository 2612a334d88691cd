"""Small fixed models: the children of optimizer search (the architecture stays, the update rule varies)."""

from __future__ import annotations

import math

from torch import nn


class _Image(nn.Module):
    """Reshape flat features (digits' 64 pixels) to a one-channel square image."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x.view(x.shape[0], 1, self.side, self.side)


def small_cnn(in_features: int, n_classes: int, width: int = 16) -> nn.Sequential:
    """Two 3x3 convolutions, a 2x2 max pool and a linear head, on flat square images (8x8 for digits)."""
    side = math.isqrt(in_features)
    if side * side != in_features or side < 2:
        raise ValueError(f"small_cnn needs a square image flattened to n*n features, got {in_features}")
    return nn.Sequential(
        _Image(side),
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (side // 2) ** 2, n_classes),
    )


def small_mlp(in_features: int, n_classes: int, width: int = 128) -> nn.Sequential:
    """Two tanh hidden layers: the model of the task that optimizer search never trains on."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, width),
        nn.Tanh(),
        nn.Linear(width, width),
        nn.Tanh(),
        nn.Linear(width, n_classes),
    )
