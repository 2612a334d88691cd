"""NASNet / ENAS micro cells: a normal and a reduction cell of B nodes, stacked into a network.

A cell takes the outputs of the two cells before it (nodes 0 and 1, each brought to C channels by a
ReLU-conv1x1-BN, or a factorized reduction when node 0 is twice the size of node 1). Node b (b >= 2)
picks two earlier nodes and one op for each, and adds the two results. The cell's output is the
concatenation of the nodes no other node consumed (its loose ends), as in NASNet and ENAS. In a
reduction cell the ops that read nodes 0 and 1 have stride 2 and the channels double.

The network: a stem convolution, then ``reductions + 1`` stages of N normal cells separated by a
reduction cell, then ReLU, global average pooling and a linear classifier. Works on 1-D signals
(MNIST-1D) and 2-D images; on 1-D data a factorized 1xk-kx1 convolution is a k-wide convolution
followed by a 1-wide one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from l2l.nas.cells import Reshape
from l2l.nas.genotypes import NASNET_OPS, MicroNode, loose_ends
from l2l.nas.ops import FactorizedReduce, ReLUConvBN, batch_norm, build_op, conv_class


def make_op(name: str, c: int, stride: int, dims: int) -> nn.Module:
    """The module of NASNet op ``name`` on ``c`` channels with ``stride`` (from the table in `l2l.nas.ops`)."""
    return build_op(name, c, stride, dims, NASNET_OPS, "micro op")


OpMaker = Callable[[int, str, int, int, int], nn.Module]
"""``(slot, name, c, stride, dims)`` -> the module of op ``name`` at input slot ``slot`` of a cell (`make_op`
builds a new one; weight sharing may hand back one built before)."""


class MicroCell(nn.Module):
    """One cell. ``c_pp`` and ``c_p``: channels of the two inputs; ``reduce_prev``: node 0 is twice as big."""

    def __init__(
        self,
        nodes: Sequence[MicroNode],
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduce_prev: bool,
        dims: int,
        op_maker: OpMaker | None = None,
    ) -> None:
        super().__init__()
        for b, node in enumerate(nodes):
            if not (0 <= node.a < b + 2 and 0 <= node.b < b + 2):
                raise ValueError(f"node {b + 2} reads nodes {node.a} and {node.b}; only 0..{b + 1} come before it")
        self.nodes = list(nodes)
        self.pre0 = FactorizedReduce(c_pp, c, dims) if reduce_prev else ReLUConvBN(c_pp, c, 1, 1, dims)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, dims)
        self.ops = nn.ModuleList()
        for node in self.nodes:
            for src, op in ((node.a, node.op_a), (node.b, node.op_b)):
                stride = 2 if reduction and src < 2 else 1
                if op_maker is None:
                    self.ops.append(make_op(op, c, stride, dims))
                else:
                    self.ops.append(op_maker(len(self.ops), op, c, stride, dims))
        self.out = loose_ends(self.nodes)
        self.c_out = c * len(self.out)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i, node in enumerate(self.nodes):
            states.append(self.ops[2 * i](states[node.a]) + self.ops[2 * i + 1](states[node.b]))
        return torch.cat([states[i] for i in self.out], dim=1)


class MicroNet(nn.Module):
    """Stem, ``reductions + 1`` stages of ``cells`` normal cells joined by reduction cells, classifier."""

    def __init__(
        self,
        normal: Sequence[MicroNode],
        reduce: Sequence[MicroNode],
        shape: tuple[int, ...],
        n_classes: int,
        channels: int = 16,
        cells: int = 1,
        reductions: int = 2,
        stem_multiplier: int = 3,
        op_maker: Callable[[int], OpMaker] | None = None,
    ) -> None:
        """``op_maker(i)``: how cell ``i`` makes its ops (`make_op` when None)."""
        super().__init__()
        dims = len(shape) - 1
        if dims not in (1, 2):
            raise ValueError(f"inputs must be (channels, length) or (channels, height, width), got {shape}")
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(
            Reshape(shape), conv_class(dims)(shape[0], c_stem, 3, padding=1, bias=False), batch_norm(dims, c_stem)
        )
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        reduce_prev = False
        for stage in range(reductions + 1):
            if stage > 0:
                c *= 2
                maker = op_maker(len(self.cells)) if op_maker else None
                cell = MicroCell(reduce, c_pp, c_p, c, True, reduce_prev, dims, maker)
                self.cells.append(cell)
                c_pp, c_p, reduce_prev = c_p, cell.c_out, True
            for _ in range(cells):
                maker = op_maker(len(self.cells)) if op_maker else None
                cell = MicroCell(normal, c_pp, c_p, c, False, reduce_prev, dims, maker)
                self.cells.append(cell)
                c_pp, c_p, reduce_prev = c_p, cell.c_out, False
        pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.ReLU(), pool, nn.Flatten(), nn.Linear(c_p, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)  # type: ignore[no-any-return]
