"""NASNet / ENAS micro cells: every op, reduction sizes, loose ends, FLOPs by hand, the space's decisions."""

from __future__ import annotations

import random

import pytest
import torch

from l2l.nas.cost import count_macs
from l2l.nas.micro import NASNET_OPS, MicroCell, MicroNet, MicroNode, loose_ends, make_op
from l2l.search_spaces import load_space, token_sizes


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("op", NASNET_OPS)
def test_every_op_keeps_or_halves_the_size(op: str, dims: int) -> None:
    shape = (2, 6, 9, 7) if dims == 2 else (2, 6, 9)
    x = torch.randn(*shape, requires_grad=True)
    same, half = make_op(op, 6, 1, dims), make_op(op, 6, 2, dims)
    assert same(x).shape == x.shape
    assert half(x).shape == (2, 6, *[(n + 1) // 2 for n in shape[2:]])
    (same(x).sum() + half(x).sum()).backward()
    assert x.grad is not None


def test_unknown_op_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown micro op 'sep_conv_9x9'; known: identity, "):
        make_op("sep_conv_9x9", 4, 1, 1)


def test_cell_concatenates_its_loose_ends_and_rejects_later_inputs() -> None:
    nodes = [
        MicroNode(0, "identity", 1, "sep_conv_3x3"),
        MicroNode(2, "max_pool_3x3", 0, "identity"),
        MicroNode(1, "avg_pool_3x3", 1, "identity"),
    ]
    assert loose_ends(nodes) == [3, 4]
    cell = MicroCell(nodes, 5, 7, 4, reduction=False, reduce_prev=False, dims=1)
    assert cell.c_out == 8
    assert cell(torch.randn(3, 5, 10), torch.randn(3, 7, 10)).shape == (3, 8, 10)
    with pytest.raises(ValueError, match=r"node 3 reads nodes 3 and 0; only 0..2 come before it"):
        MicroCell([nodes[0], MicroNode(3, "identity", 0, "identity")], 4, 4, 4, False, False, 1)


def test_flops_of_a_one_node_1d_network_by_hand() -> None:
    net = MicroNet(
        [MicroNode(0, "identity", 1, "conv_1x1")], [], (1, 8), 3, channels=2, reductions=0, stem_multiplier=1
    )
    stem = 2 * 8 * (1 * 3)  # 2 filters x 8 positions x (1 channel x 3 taps)
    pre = 2 * (2 * 8 * 2)  # two 1x1 preprocessing convs, 2 -> 2 channels over 8 positions
    op = 2 * 8 * 2  # the conv_1x1 op; identity is free
    head = 2 * 3  # the loose node 2 (2 channels) -> 3 classes
    assert count_macs(net, torch.randn(1, 8)) == stem + pre + op + head == 150


def test_flops_of_a_2d_network_with_a_reduction_cell_by_hand() -> None:
    normal = [MicroNode(1, "identity", 1, "identity")]
    reduce = [MicroNode(0, "sep_conv_3x3", 1, "max_pool_3x3")]
    net = MicroNet(normal, reduce, (1, 4, 4), 10, channels=2, cells=1, reductions=1, stem_multiplier=1)
    stem = 2 * 16 * 9
    normal1 = 2 * (2 * 16 * 2)  # preprocessing of the stem outputs, 2 -> 2 channels, 4x4
    reduce_pre = 2 * (4 * 16 * 2)  # 2 -> 4 channels (channels double), still 4x4
    # sep conv 3x3 on 4 channels, twice: depthwise (stride 2, then 1) on a 2x2 output, then pointwise 4 -> 4
    sep = 2 * (4 * 4 * 9 + 4 * 4 * 4)
    # the normal cell after the reduction: node 0 (2 channels, 4x4) is factorized-reduced to 4 channels at 2x2
    # by two stride-2 1x1 convs of 2 outputs each; node 1 (4 channels, 2x2) by a 1x1 conv 4 -> 4
    normal2 = 2 * (2 * 4 * 2) + 4 * 4 * 4
    head = 4 * 10
    assert count_macs(net, torch.randn(1, 16)) == stem + normal1 + reduce_pre + sep + normal2 + head == 1224
    out = net(torch.randn(3, 16))
    assert out.shape == (3, 10)


def test_space_decisions_and_graph() -> None:
    space = load_space("micro", {"nodes": 2, "ops": "nasnet"})
    names = [d.name for d in space.decisions()]
    assert names[:4] == ["normal_n2_a", "normal_n2_op_a", "normal_n2_b", "normal_n2_op_b"]
    assert len(names) == 2 * 2 * 4
    sizes = token_sizes(space.decisions())
    assert sizes[:8] == [2, 13, 2, 13, 3, 13, 3, 13]
    rng = random.Random(0)
    spec = space.decode(tuple(rng.randrange(k) for k in sizes))
    graph = space.graph(spec)
    assert len(graph["nodes"]) == 2 * 5
    assert sum(1 for e in graph["edges"] if e[2] != "concat") == 2 * 2 * 2
    assert all(0 <= i < 10 and 0 <= j < 10 for i, j, _ in graph["edges"])
    assert "normal: n2=[" in space.describe(spec)


def test_bad_options_are_named() -> None:
    from l2l.search_spaces import SpaceError

    with pytest.raises(SpaceError, match=r"unknown micro op set 'darts'; known: enas, nasnet"):
        load_space("micro", {"ops": "darts"})
    with pytest.raises(SpaceError, match="micro needs nodes"):
        load_space("micro", {"nodes": 0})


@pytest.mark.parametrize("space", ["mlp", "macro", "micro", "nb201_cell"])
def test_an_unknown_dataset_is_refused_before_any_child_trains(space: str) -> None:
    from l2l.search_spaces import SpaceError

    with pytest.raises(SpaceError, match=r"unknown dataset 'nosuch'; known: cifar10, digits, mnist1d, synthetic"):
        load_space(space, {"dataset": "nosuch"})


def test_cli_prints_cell_descriptions_with_their_brackets() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from l2l.runs.cli.formatting import describe

    space = load_space("micro", {"nodes": 2})
    spec = space.decode(tuple(0 for _ in space.decisions()))
    run = SimpleNamespace(space="micro", config={"space_options": {"nodes": 2}})
    console = Console(record=True, width=300)
    console.print(describe(run, spec.to_json()))
    assert space.describe(spec) in console.export_text()  # Rich must not eat "[sep_conv_3x3(0)+...]"
    assert "n2=[sep_conv_3x3(0)+sep_conv_3x3(0)]" in space.describe(spec)


def test_without_reductions_micro_searches_only_its_normal_cell() -> None:
    """With reductions=0 the network has no reduction cell, yet its 20 choices were searched (and counted in a
    weight-sharing run's share of parameter-free ops): two specs differing only there built one network."""
    from l2l.search_spaces.micro import MicroSpace

    full = MicroSpace(nodes=2, channels=2)
    flat = MicroSpace(nodes=2, channels=2, reductions=0)
    assert [d.name for d in flat.decisions()] == [d.name for d in full.decisions() if d.name.startswith("normal_")]
    spec = flat.decode([0] * len(flat.decisions()))
    model, example = flat.build(spec, 0)
    assert model(example).shape == (1, 10) and "reduce" not in flat.describe(spec)
