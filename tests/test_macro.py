"""Zoph & Le's macro CNN: skip connections, padding of unequal inputs, loose ends, FLOPs by hand, schedule."""

from __future__ import annotations

import json
import random

import pytest
import torch

from l2l.nas.cost import count_macs, count_parameters
from l2l.nas.macro import MacroLayer, MacroNet
from l2l.search_spaces import Spec, load_space, token_sizes


def test_flops_of_a_small_1d_network_by_hand() -> None:
    layers = [MacroLayer((1, 3), 4, 1, ()), MacroLayer((1, 1), 2, 1, (0,))]
    net = MacroNet(layers, (1, 10), 3)
    # conv0: 4 x 10 outputs x (1 x 3); conv1: 2 x 10 x (4 x 1); classifier on the loose layer 1: 2 x 3
    assert count_macs(net, torch.randn(1, 10)) == 120 + 80 + 6
    assert net.loose == [1]


def test_flops_of_a_small_2d_network_with_stride_and_skips_by_hand() -> None:
    layers = [
        MacroLayer((3, 3), 4, 2, ()),  # 8x8 -> 4x4
        MacroLayer((1, 1), 2, 1, ()),  # no input chosen: takes the image
        MacroLayer((3, 3), 3, 1, (0, 1)),  # layer 0 padded from 4x4 to 8x8, concatenated: 6 channels
    ]
    net = MacroNet(layers, (1, 8, 8), 10)
    expected = 4 * 4 * 4 * 9 + 2 * 8 * 8 * 1 + 3 * 8 * 8 * (6 * 9) + 3 * 10
    assert count_macs(net, torch.randn(1, 64)) == expected == 11102
    out = net(torch.randn(5, 64))
    assert out.shape == (5, 10)
    out.sum().backward()


def test_loose_ends_all_reach_the_classifier() -> None:
    layers = [MacroLayer((1, 3), 4, 1, ()), MacroLayer((1, 3), 5, 2, ()), MacroLayer((1, 3), 6, 3, (0,))]
    net = MacroNet(layers, (1, 40), 10)
    assert net.loose == [1, 2] and net.features == 5 + 6
    with pytest.raises(ValueError, match=r"layer 1 takes inputs \(1,\); only layers 0..0 come before it"):
        MacroNet([MacroLayer((1, 3), 4, 1, ()), MacroLayer((1, 3), 4, 1, (1,))], (1, 40), 10)


@pytest.mark.parametrize("space_name", ["macro", "nb201_cell", "micro"])
def test_random_specs_round_trip_through_json_to_the_same_model(space_name: str) -> None:
    space = load_space(space_name, {"epochs": 1, **({"strides": True} if space_name == "macro" else {})})
    rng = random.Random(4)
    for _ in range(5):
        spec = space.decode(tuple(rng.randrange(k) for k in token_sizes(space.decisions())))
        again = Spec.from_json(json.loads(json.dumps(spec.to_json())))
        a, example = space.build(spec, seed=2)  # type: ignore[attr-defined]
        b, _ = space.build(again, seed=2)  # type: ignore[attr-defined]
        a.eval()
        b.eval()
        assert count_parameters(a) == count_parameters(b)
        assert torch.equal(a(example), b(example))
        a.train()
        a(torch.cat([example] * 4)).sum().backward()  # forward and backward on a batch


def test_growing_depth_schedule_and_2d_decisions() -> None:
    space = load_space("macro", {"layers": 6, "start_layers": 2, "grow_by": 2, "grow_every": 10})
    assert [space.depth(n) for n in (0, 9, 10, 25, 40, 99)] == [2, 2, 4, 6, 6, 6]  # type: ignore[attr-defined]
    images = load_space("macro", {"dataset": "digits", "layers": 2})
    assert [d.name for d in images.decisions()] == [
        "l0_height",
        "l0_width",
        "l0_filters",
        "l0_inputs",
        "l1_height",
        "l1_width",
        "l1_filters",
        "l1_inputs",
    ]


def test_the_drawn_graph_names_each_layers_stride_as_the_description_does() -> None:
    space = load_space("macro", {"layers": 2, "strides": True})
    values = {"l0_width": 5, "l0_filters": 24, "l0_stride": 2, "l1_width": 3, "l1_filters": 36, "l1_stride": 1}
    first = space.decode([0] * len(token_sizes(space.decisions())))
    spec = Spec(space="macro", choices=tuple({**first.as_dict(), **values}.items()))
    assert space.describe(spec).startswith("L0[5x24/2<-in] L1[3x36")
    assert space.graph(spec)["nodes"][1:3] == ["L0: 5 x24 /2", "L1: 3 x36"]
