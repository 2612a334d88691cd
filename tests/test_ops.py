"""The op table: one factory per op name for NAS-Bench-201 and NASNet/ENAS cells, unknown names named.

The fingerprints below were recorded from the if-chains the table replaced: the same seed must build
the same child (parameter count, initial weights, outputs).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from l2l.nas.cells import build_cell_network
from l2l.nas.cost import count_parameters
from l2l.nas.micro import NASNET_OPS, MicroNet, MicroNode


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
