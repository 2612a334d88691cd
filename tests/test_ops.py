"""The op table: one factory per op name for NAS-Bench-201 and NASNet/ENAS cells, unknown names named.

The fingerprints below were recorded from the if-chains the table replaced: the same seed must build
the same child (parameter count, initial weights, outputs).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from l2l.nas.cells import CELL_OPS, Cell, build_cell_network
from l2l.nas.cost import count_parameters
from l2l.nas.genotypes import ENAS_OPS, NASNET_OPS
from l2l.nas.micro import MicroNet, MicroNode, make_op
from l2l.nas.ops import OPS, OpError, build_op


def _fingerprint(net: nn.Module, x: torch.Tensor) -> tuple[int, float, float]:
    net.eval()
    with torch.no_grad():
        out = net(x)
        weights = sum(float(p.double().abs().sum()) for p in net.parameters())
    return count_parameters(net), weights, float(out.double().abs().sum())


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((1, 40), (3374, 434.967693, 4.244653)), ((1, 8, 8), (8294, 590.206199, 4.185573))],
)
def test_cell_network_is_the_one_built_before_the_table(
    shape: tuple[int, ...], expected: tuple[int, float, float]
) -> None:
    ops = ["nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none", "skip_connect"]
    torch.manual_seed(0)
    net = build_cell_network(ops, shape, 10, channels=4, cells_per_stage=1)
    torch.manual_seed(1)
    x = torch.randn(3, *shape)
    params, weights, out = _fingerprint(net, x.flatten(1) if len(shape) == 2 else x)
    assert params == expected[0]
    assert weights == pytest.approx(expected[1], rel=1e-6)
    assert out == pytest.approx(expected[2], rel=1e-5)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((1, 16), (2601, 562.162149, 1.431503)), ((1, 8, 8), (4945, 694.24488, 2.510241))],
)
def test_micro_network_with_every_op_is_the_one_built_before_the_table(
    shape: tuple[int, ...], expected: tuple[int, float, float]
) -> None:
    ops = NASNET_OPS
    normal = [MicroNode(0, ops[i], 1, ops[i + 1]) for i in range(0, 12, 4)] + [MicroNode(2, ops[12], 3, ops[0])]
    reduce = [MicroNode(0, ops[i + 2], 1, ops[i + 3]) for i in range(0, 12, 4)] + [MicroNode(1, ops[11], 4, ops[5])]
    torch.manual_seed(0)
    net = MicroNet(normal, reduce, shape, 5, channels=4, cells=1, reductions=1)
    torch.manual_seed(1)
    params, weights, out = _fingerprint(net, torch.randn(3, *shape).flatten(1))
    assert params == expected[0]
    assert weights == pytest.approx(expected[1], rel=1e-6)
    assert out == pytest.approx(expected[2], rel=1e-5)


def test_every_op_set_is_drawn_from_the_one_table() -> None:
    assert set(CELL_OPS) | set(NASNET_OPS) | set(ENAS_OPS) == set(OPS)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("name", [op for op in OPS if op not in NASNET_OPS])  # test_micro covers NASNet's
def test_nb201_ops_keep_or_halve_the_size(name: str, dims: int) -> None:
    x = torch.randn(2, 4, 9, 7) if dims == 2 else torch.randn(2, 4, 9)
    same, half = build_op(name, 4, 1, dims), build_op(name, 4, 2, dims)
    assert same(x).shape == x.shape
    assert half(x).shape == (2, 4, *[(n + 1) // 2 for n in x.shape[2:]])


def test_unknown_op_names_itself_and_the_known_ones() -> None:
    with pytest.raises(
        OpError, match=r"^unknown op 'conv_9x9'; known: none, skip_connect, nor_conv_1x1, .*sep_conv_7x7$"
    ):
        build_op("conv_9x9", 4, 1, 1)
    # an op of the table outside a cell's op set is unknown to that cell, not silently built
    with pytest.raises(OpError, match=r"^unknown cell op 'sep_conv_3x3'; known: none, skip_connect, .*avg_pool_3x3$"):
        Cell(["sep_conv_3x3"] + ["none"] * 5, 4, dims=1)
    with pytest.raises(OpError, match=r"^unknown micro op 'nor_conv_3x3'; known: identity, conv_1x3_3x1, "):
        make_op("nor_conv_3x3", 4, 1, 1)
    assert issubclass(OpError, ValueError)
