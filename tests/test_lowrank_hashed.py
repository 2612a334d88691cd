"""Low-rank layers (honest parameters and FLOPs) and hashed sparse layers (against the dense layer)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from l2l.nas import lowrank
from l2l.nas.cost import count_macs, count_parameters
from l2l.nas.hashed import HashedLinear


def test_rank_choices_resolve_to_ranks() -> None:
    assert lowrank.resolve_rank("full", 64, 32) is None
    assert lowrank.resolve_rank("1/4", 64, 32) == 8
    assert lowrank.resolve_rank("1/64", 64, 32) == 1  # never below 1
    assert lowrank.resolve_rank(32, 64, 32) is None  # factoring at full rank would only cost more
    with pytest.raises(ValueError, match=r"unknown rank 'half'"):
        lowrank.resolve_rank("half", 4, 4)
    with pytest.raises(ValueError, match=r"a rank fraction must be in \(0, 1\], got '3/2'"):
        lowrank.resolve_rank("3/2", 4, 4)
    with pytest.raises(ValueError, match=r"unknown rank '1/0'"):  # was ZeroDivisionError: Fraction(1, 0)
        lowrank.linear(64, 32, "1/0")


def test_low_rank_linear_counts_parameters_and_flops_honestly() -> None:
    full = lowrank.linear(64, 32)
    assert isinstance(full, nn.Linear) and count_parameters(full) == 64 * 32 + 32
    low = lowrank.linear(64, 32, "1/4")  # rank 8
    assert count_parameters(low) == 8 * (64 + 32) + 32
    assert count_macs(low, torch.randn(1, 64)) == 8 * (64 + 32)
    x = torch.randn(5, 64)
    u, v = low[1].weight, low[0].weight  # type: ignore[index]
    # the layer is the matrix W = U V of rank 8
    torch.testing.assert_close(low(x), x @ (u @ v).t() + low[1].bias)  # type: ignore[index]
    assert torch.linalg.matrix_rank(u @ v) == 8


def test_low_rank_conv_by_hand() -> None:
    conv = lowrank.conv(1, 4, 16, 5, padding=2, rank=3)
    x = torch.randn(1, 4, 10)
    assert conv(x).shape == (1, 16, 10)
    assert count_parameters(conv) == 3 * 4 * 5 + 16 * 3 + 16
    assert count_macs(conv, x) == 10 * (3 * 4 * 5 + 16 * 3)
    assert isinstance(lowrank.conv(2, 4, 16, 3, rank="full"), nn.Conv2d)


@pytest.mark.parametrize("share", ["input", "batch"])
@pytest.mark.parametrize("hash_name", ["simhash", "wta"])
def test_hashed_layer_with_every_neuron_active_is_the_dense_layer(hash_name: str, share: str) -> None:
    torch.manual_seed(0)
    layer = HashedLinear(12, 40, active=1.0, hash=hash_name, bits=3, tables=4, share=share)
    dense = nn.Linear(12, 40)
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
        dense.bias.copy_(layer.bias)
    x = torch.randn(7, 12, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, ref = layer(x), dense(x2)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, dense.weight.grad)
    torch.testing.assert_close(layer.bias.grad, dense.bias.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_sparse_layer_evaluates_and_updates_only_the_retrieved_neurons() -> None:
    torch.manual_seed(0)
    layer = HashedLinear(32, 1000, active=0.05, bits=5, tables=8)
    assert layer.k == 50
    x = torch.randn(4, 32)
    ids = layer.retrieve(x)
    assert ids.shape == (4, 50) and all(len(set(row.tolist())) == 50 for row in ids)
    out = layer(x)
    assert ((out != 0).sum(1) <= 50).all()
    out.sum().backward()
    assert layer.weight.grad is not None
    touched = (layer.weight.grad.abs().sum(1) > 0).sum()
    assert touched <= 4 * 50
    assert count_macs(layer, torch.randn(1, 32)) == 50 * 32 + 8 * 5 * 32  # evaluated neurons + SimHash


@pytest.mark.parametrize("hash_name", ["simhash", "wta"])
def test_hash_tables_retrieve_neurons_with_larger_activations_than_chance(hash_name: str) -> None:
    torch.manual_seed(0)
    layer = HashedLinear(64, 4096, active=0.05, hash=hash_name, bits=6 if hash_name == "simhash" else 3, tables=16)
    x = torch.randn(64, 64)
    act = x @ layer.weight.t()
    chosen = act.gather(1, layer.retrieve(x))
    assert chosen.mean() > act.mean() + 0.5 * act.std()


def test_batch_sharing_evaluates_the_same_neurons_for_every_input() -> None:
    torch.manual_seed(0)
    layer = HashedLinear(32, 1000, active=0.05, bits=5, tables=8, share="batch")
    x = torch.randn(6, 32)
    out = layer(x)
    live = out != 0
    assert (live == live[0]).all() and live[0].sum() <= 50  # one set of 50 neurons for the whole batch
    out.sum().backward()
    assert layer.weight.grad is not None and (layer.weight.grad.abs().sum(1) > 0).sum() <= 50
    assert count_macs(layer, torch.randn(1, 32)) == 50 * 32 + 8 * 5 * 32
    with pytest.raises(ValueError, match="unknown sharing 'all'"):
        HashedLinear(8, 8, share="all")


def test_tables_are_rebuilt_on_schedule() -> None:
    torch.manual_seed(0)
    layer = HashedLinear(8, 64, active=0.25, bits=4, tables=2, rebuild_every=3)
    before = layer.sorted_codes.clone()
    with torch.no_grad():
        layer.weight.neg_()  # every SimHash bit flips
    x = torch.randn(2, 8)
    for _ in range(3):
        layer(x)
    assert torch.equal(layer.sorted_codes, before)  # steps 0, 1, 2: not yet
    layer(x)
    assert not torch.equal(layer.sorted_codes, before)  # step 3 rebuilt from the new weights
    with pytest.raises(ValueError, match="unknown hash 'minhash'"):
        HashedLinear(8, 8, hash="minhash")
    for kwargs, message in (  # each was a TypeError or RuntimeError from deep inside, or taken (bits=70)
        ({"active": "0.2"}, "active must be a fraction in (0, 1], got '0.2'"),
        ({"n_out": 0}, "n_out must be a whole number >= 1, got 0"),
        ({"bits": 70}, "bits must be in 1..40, got 70"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            HashedLinear(**{"n_in": 8, "n_out": 16, **kwargs})  # type: ignore[arg-type]


def test_mlp_space_offers_rank_and_hashing_and_counts_their_cost() -> None:
    from l2l.search_spaces import Context, Spec, load_space

    space = load_space("mlp", {"low_rank": True, "hashed": True, "widths": "64,512", "epochs": 1})
    names = [d.name for d in space.decisions()]
    assert {"rank_0", "active_0", "rank_2", "active_2"} <= set(names)
    spec = space.decode(tuple(0 for _ in space.decisions()))  # 1 layer of 64, full rank, dense
    values = dict(spec.items())
    values.update(width_0="512", rank_0="1/8")  # rank 8 of the 64 -> 512 layer
    low = space.evaluate(Spec(spec.space, tuple(values.items())), Context(seed=0))
    assert low.cost["params"] == 8 * (64 + 512) + 512 + 512 * 10 + 10
    assert low.cost["flops"] == 8 * (64 + 512) + 512 * 10
    values.update(active_0="0.05")  # hashed wins over the rank: 26 of 512 neurons, plus SimHash 8 x 6 x 64
    hashed = space.evaluate(Spec(spec.space, tuple(values.items())), Context(seed=0))
    assert hashed.cost["params"] == 64 * 512 + 512 + 512 * 10 + 10
    assert hashed.cost["flops"] == 26 * 64 + 8 * 6 * 64 + 512 * 10
    assert "512relu[hashed 0.05]" in space.describe(Spec(spec.space, tuple(values.items())))
    assert hashed.ok and low.ok


def test_macro_space_low_rank_convolutions_and_hashed_head() -> None:
    from l2l.nas.hashed import HashedLinear
    from l2l.search_spaces import load_space

    space = load_space("macro", {"layers": 2, "low_rank": True, "hashed": True, "head_width": 1024})
    assert [d.name for d in space.decisions()][-1] == "head_active"
    spec = space.decode((3, 3, 2, 3, 3, 0, 2, 2))  # 7-wide, 64 filters, rank 1/4 (twice); head 5%
    model, example = space.build(spec, seed=0)  # type: ignore[attr-defined]
    assert isinstance(model.head[0], HashedLinear) and model.head[0].k == 51
    assert "r1/4" in space.describe(spec) and "head[1024 active 0.05]" in space.describe(spec)
    first = model.blocks[0][0]  # 1 -> 64 channels, kernel 7: rank min(7, 64) / 4 = 1
    assert isinstance(first, nn.Sequential) and first[0].out_channels == 1
    out = model(torch.cat([example] * 3))
    assert out.shape == (3, 10)
