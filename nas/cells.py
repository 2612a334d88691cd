"""NAS-Bench-201 cells as trainable networks, on 1-D signals (MNIST-1D) or 2-D images (digits, CIFAR-10).

A cell has 4 nodes; node j sums one op applied to each earlier node i (6 edges). Ops (from the table in
`l2l.nas.ops`): none (zero), skip_connect, nor_conv_1x1 and nor_conv_3x3 (ReLU-conv-BN), avg_pool_3x3.
The network is the benchmark's: a stem convolution, three stages of N cells with C, 2C and 4C channels
joined by residual reduction blocks of stride 2, then BN-ReLU, global average pooling and a linear
classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from l2l.nas.ops import batch_norm, build_op, conv_class

CELL_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CELL_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


class Cell(nn.Module):
    """One NAS-Bench-201 cell: ``ops[k]`` sits on edge ``CELL_EDGES[k]`` (to node, from node)."""

    def __init__(self, ops: Sequence[str], c: int, dims: int) -> None:
        super().__init__()
        if len(ops) != len(CELL_EDGES):
            raise ValueError(f"a cell needs {len(CELL_EDGES)} ops, got {len(ops)}")
        self.edges = nn.ModuleList(build_op(op, c, 1, dims, CELL_OPS, "cell op") for op in ops)

    @classmethod
    def of(cls, edges: Sequence[nn.Module]) -> Cell:
        """A cell of ops already built (``edges[k]`` on edge k), constructing nothing else."""
        cell = cls.__new__(cls)
        nn.Module.__init__(cell)
        cell.edges = nn.ModuleList(edges)
        return cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[k](nodes[i]) for k, (dst, i) in enumerate(CELL_EDGES) if dst == j))  # type: ignore[arg-type]
        return nodes[3]


class _Reduction(nn.Module):
    """The residual block of stride 2 between stages (ResNet basic block)."""

    def __init__(self, c_in: int, c_out: int, dims: int) -> None:
        super().__init__()
        conv = conv_class(dims)
        self.a = nn.Sequential(
            nn.ReLU(), conv(c_in, c_out, 3, stride=2, padding=1, bias=False), batch_norm(dims, c_out)
        )
        self.b = nn.Sequential(nn.ReLU(), conv(c_out, c_out, 3, padding=1, bias=False), batch_norm(dims, c_out))
        pool = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
        self.shortcut = nn.Sequential(pool(2, stride=2, ceil_mode=True), conv(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class Reshape(nn.Module):
    """Flat features to the (channels, length) or (channels, height, width) the convolutions expect."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def build_cell_network(
    ops: Sequence[str], shape: tuple[int, ...], n_classes: int, channels: int = 16, cells_per_stage: int = 5
) -> nn.Sequential:
    """The NAS-Bench-201 network around cell ``ops`` for inputs of ``shape`` (C, L) or (C, H, W)."""
    dims = len(shape) - 1
    if dims not in (1, 2):
        raise ValueError(f"inputs must be (channels, length) or (channels, height, width), got {shape}")
    c = channels
    layers: list[nn.Module] = [
        Reshape(shape),
        conv_class(dims)(shape[0], c, 3, padding=1, bias=False),
        batch_norm(dims, c),
    ]
    for stage in range(3):
        if stage > 0:
            layers.append(_Reduction(c, 2 * c, dims))
            c *= 2
        layers += [Cell(ops, c, dims) for _ in range(cells_per_stage)]
    pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
    layers += [batch_norm(dims, c), nn.ReLU(), pool, nn.Flatten(), nn.Linear(c, n_classes)]
    return nn.Sequential(*layers)


class CellParts:
    """The modules of the cell networks built so far, by place, to assemble another architecture from
    without constructing or initializing one (weight sharing: `SharedWeights` binds every architecture's
    network to the same tensors, so the module that holds an op at a place serves every architecture with
    that op there, and the layers outside the cells serve all of them).

    `assemble` gives None while some op at some place has not been built yet: the caller builds that
    architecture in full (its new weights initialized as a stand-alone child's are) and `remember`s it.
    A network assembled here has the parameter names and shapes of the same architecture built in full.
    """

    def __init__(self) -> None:
        self._layers: list[nn.Module | None] | None = None  # None at a cell's place
        self._ops: dict[tuple[int, int, str], nn.Module] = {}  # (layer, edge, op) -> its module

    def assemble(self, ops: Sequence[str]) -> nn.Sequential | None:
        if self._layers is None:
            return None
        layers: list[nn.Module] = []
        for i, layer in enumerate(self._layers):
            if layer is not None:
                layers.append(layer)
                continue
            edges = [self._ops.get((i, k, op)) for k, op in enumerate(ops)]
            if any(e is None for e in edges):
                return None
            layers.append(Cell.of(edges))  # type: ignore[arg-type]
        return nn.Sequential(*layers)

    def remember(self, ops: Sequence[str], network: nn.Sequential) -> None:
        """Keep the modules of ``network``, just built for ``ops``, that no earlier network provided."""
        if self._layers is None:
            self._layers = [None if isinstance(layer, Cell) else layer for layer in network]
        for i, layer in enumerate(network):
            if isinstance(layer, Cell):
                for k, (op, edge) in enumerate(zip(ops, layer.edges, strict=True)):
                    self._ops.setdefault((i, k, op), edge)
