"""Zoph & Le's macro CNN: each layer picks its filter size, filter count, stride and which earlier layers feed it.

A layer's inputs are the outputs of the earlier layers it chose (its anchor bits). Inputs of different
sizes are zero-padded to the largest and concatenated along channels. A layer that chose none takes
the input signal. Outputs that no later layer consumes are pooled and concatenated into the
classifier. Each layer is conv -> batch norm -> ReLU, with "same" padding, so only strides change
sizes. Works on 1-D signals (kernel width only) and on 2-D images (height x width). A convolution
can be low rank (`l2l.nas.lowrank`) or have predicted filters (`l2l.nas.denil`; then it keeps its full
rank), and a wide hidden layer before the classifier can be hashed
(`l2l.nas.hashed`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from l2l.nas.genotypes import MacroLayer


def _pad_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    pads: list[int] = []
    for have, want in zip(reversed(x.shape[2:]), reversed(size), strict=True):
        pads += [0, want - have]
    return F.pad(x, pads) if any(pads) else x


def _concat(xs: list[torch.Tensor]) -> torch.Tensor:
    if len(xs) == 1:
        return xs[0]
    size = [max(x.shape[d] for x in xs) for d in range(2, xs[0].dim())]
    return torch.cat([_pad_to(x, size) for x in xs], dim=1)


class MacroNet(nn.Module):
    """The network a macro spec describes, for inputs of ``shape`` (C, L) or (C, H, W)."""

    def __init__(
        self,
        layers: Sequence[MacroLayer],
        shape: tuple[int, ...],
        n_classes: int,
        head_width: int = 0,
        head_active: float = 1.0,
    ) -> None:
        super().__init__()
        from l2l.nas import denil, lowrank

        self.shape = shape
        self.dims = len(shape) - 1
        if self.dims not in (1, 2):
            raise ValueError(f"inputs must be (channels, length) or (channels, height, width), got {shape}")
        self.layers = list(layers)
        bn = nn.BatchNorm1d if self.dims == 1 else nn.BatchNorm2d
        channels: list[int] = []
        self.blocks = nn.ModuleList()
        for i, layer in enumerate(self.layers):
            if any(not 0 <= j < i for j in layer.inputs):
                raise ValueError(f"layer {i} takes inputs {layer.inputs}; only layers 0..{i - 1} come before it")
            c_in = sum(channels[j] for j in layer.inputs) if layer.inputs else shape[0]
            kernel = layer.kernel[1:] if self.dims == 1 else layer.kernel
            padding = tuple(k // 2 for k in kernel)
            args = (self.dims, c_in, layer.filters, kernel, layer.stride, padding)
            if layer.learned != "dense":
                block = denil.conv(*args, layer.learned, False)
            elif self.dims == 1:
                block = lowrank.conv(1, c_in, layer.filters, kernel[0], layer.stride, padding[0], layer.rank, False)
            else:
                kh, kw = layer.kernel
                pad2 = (kh // 2, kw // 2)
                block = lowrank.conv(2, c_in, layer.filters, (kh, kw), layer.stride, pad2, layer.rank, False)
            self.blocks.append(
                nn.Sequential(
                    block,
                    bn(layer.filters),
                    nn.ReLU(),
                )
            )
            channels.append(layer.filters)
        consumed = {j for layer in self.layers for j in layer.inputs}
        self.loose = [i for i in range(len(self.layers)) if i not in consumed]
        self.features = features = sum(channels[i] for i in self.loose)
        if head_width > 0:  # a wide hidden layer before the classifier, possibly hashed (nas.hashed)
            from l2l.nas.hashed import HashedLinear

            hidden: nn.Module = (
                nn.Linear(features, head_width)
                if head_active >= 1.0
                else HashedLinear(features, head_width, head_active)
            )
            self.head: nn.Module = nn.Sequential(hidden, nn.ReLU(), nn.Linear(head_width, n_classes))
        else:
            self.head = nn.Linear(features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], *self.shape)
        outs: list[torch.Tensor] = []
        for layer, block in zip(self.layers, self.blocks, strict=True):
            src = _concat([outs[j] for j in layer.inputs]) if layer.inputs else x
            outs.append(block(src))
        pooled = [o.mean(dim=tuple(range(2, o.dim()))) for o in (outs[i] for i in self.loose)]
        return self.head(torch.cat(pooled, dim=1))
