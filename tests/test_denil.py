"""Predicted-parameter layers (Denil et al. 2013): a fixed dictionary, learned values at alpha points only."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from l2l.nas import denil
from l2l.nas.cost import count_macs, count_parameters
from l2l.search_spaces import SearchSpace, Spec, load_space_class
from l2l.testing.spaces import Expected, SpaceContract


def test_shares_resolve_to_learned_points() -> None:
    assert denil.learned_points("dense", 40) is None
    assert denil.learned_points("1/10", 40) == 4
    assert denil.learned_points("1/10", 64) == 6  # floor: never less than 90% predicted
    assert denil.learned_points("1/10", 9) == 1  # at least one point
    assert denil.learned_points("1/2", 1) is None  # a 1x1 filter: nothing to predict
    with pytest.raises(ValueError, match="unknown predicted share 'most'"):
        denil.learned_points("most", 4)
    with pytest.raises(ValueError, match=r"a learned share must be in \(0, 1\], got '2'"):
        denil.learned_points("2", 4)


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_the_dictionary_is_a_buffer_the_optimizer_never_updates(optimizer: Any) -> None:
    torch.manual_seed(0)
    layer = denil.PredictedLinear(40, 16, 4, shape=(40,))
    assert not any(p is layer.u for p in layer.parameters())
    assert "u" in dict(layer.named_buffers())
    before_u, before_v = layer.u.clone(), layer.v.detach().clone()
    opt = optimizer(layer.parameters(), lr=0.1)
    layer(torch.randn(8, 40)).square().sum().backward()
    opt.step()
    assert torch.equal(layer.u, before_u)
    assert not torch.equal(layer.v.detach(), before_v)  # the learned values did move


def test_alpha_at_every_point_without_ridge_is_the_dense_layer() -> None:
    torch.manual_seed(0)
    layer = denil.PredictedLinear(12, 5, 12, shape=(3, 4), ridge=0.0)
    torch.testing.assert_close(layer.u, torch.eye(12).expand(layer.columns, 12, 12), atol=1e-5, rtol=0)
    dense = nn.Linear(12, 5)
    with torch.no_grad():
        dense.weight.copy_(layer.v[:, 0])  # W = V
        dense.bias.copy_(layer.bias)  # type: ignore[arg-type]
    x = torch.randn(7, 12)
    torch.testing.assert_close(layer(x), dense(x), atol=1e-5, rtol=0)
    conv = denil.PredictedConv(2, 3, 4, (3, 3), 9, padding=1, ridge=0.0)
    ref = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        ref.weight.copy_(conv.v.reshape(4, 3, 3, 3))
        ref.bias.copy_(conv.bias)  # type: ignore[union-attr, arg-type]
    img = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(img), ref(img), atol=1e-5, rtol=0)


def test_predicted_weights_recover_a_smooth_function_not_a_rough_one() -> None:
    t = torch.arange(40, dtype=torch.float64)
    u = denil.se_dictionary((40,), (10,), column=0, length=1.0).double()
    alpha = denil.alpha_points((40,), (10,), 0)[:, 0].long()
    smooth = torch.sin(2 * math.pi * t / 40) + 0.5 * torch.cos(2 * math.pi * t / 20)
    rough = torch.randn(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def relative_error(w: torch.Tensor) -> float:
        return float((u @ w[alpha] - w).norm() / w.norm())

    assert relative_error(smooth) < 0.05  # 10 of 40 values predict the other 30
    assert relative_error(rough) > 0.5  # white noise has nothing to interpolate


def test_an_empirical_kernel_equal_to_the_se_kernel_gives_the_se_dictionary() -> None:
    # the covariance of a Gaussian process with the SE kernel the smoothness prior assumes: kernel ridge
    # regression from it must be exactly the SE dictionary (same alpha points, same relative ridge)
    grid, length = (4,), 0.5  # 4 learned points of 40, 10 positions apart; the SE length is 5 positions
    t = torch.arange(40, dtype=torch.float64) / (length * 40 / grid[0])
    covariance = torch.exp(-0.5 * (t[:, None] - t[None, :]).square())
    alpha = denil.alpha_points((40,), grid, 3)[:, 0].long()
    empirical = denil.covariance_dictionary(covariance * 7.0, alpha)  # the scale of the inputs does not matter
    torch.testing.assert_close(empirical, denil.se_dictionary((40,), grid, 3, length=length), atol=1e-4, rtol=0)
    layer = denil.PredictedLinear(40, 20, 4, shape=(40,), covariance=covariance.float())
    assert layer.columns == 10 and not any(p is layer.u for p in layer.parameters())
    torch.testing.assert_close(layer.u[3], denil.se_dictionary((40,), grid, 3, length=length), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"an empirical kernel over 40 inputs is \(40, 40\), got \(39, 39\)"):
        denil.PredictedLinear(40, 20, 4, shape=(40,), covariance=torch.eye(39))


def test_empirical_covariances_of_inputs_and_of_the_patches_a_convolution_reads() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 12, generator=gen) @ torch.randn(12, 12, generator=gen)
    torch.testing.assert_close(denil.empirical_covariance(x), torch.cov(x.t()), atol=1e-4, rtol=1e-4)
    seq = torch.randn(6, 2, 15, generator=gen)  # examples, channels, positions
    padded = nn.functional.pad(seq, (2, 2))
    patches = [padded[e, c, i : i + 5] for e in range(6) for c in range(2) for i in range(15)]
    expected = torch.cov(torch.stack(patches).t())
    torch.testing.assert_close(denil.patch_covariance(seq, (5,), 2), expected, atol=1e-4, rtol=1e-4)
    img = torch.randn(4, 1, 6, 6, generator=gen)
    padded = nn.functional.pad(img, (1, 1, 1, 1))
    tiles = [padded[e, 0, i : i + 3, j : j + 3].reshape(-1) for e in range(4) for i in range(6) for j in range(6)]
    expected = torch.cov(torch.stack(tiles).t())
    torch.testing.assert_close(denil.patch_covariance(img, (3, 3), 1), expected, atol=1e-4, rtol=1e-4)
    conv = denil.PredictedConv(2, 1, 8, (3, 3), 2, padding=1, covariance=expected)
    assert conv.u.shape == (5, 9, 2) and count_parameters(conv) == 8 * 2 + 8  # 5 columns of a 1x2 grid


def test_without_topology_an_empirical_kernel_takes_random_distinct_points_per_column() -> None:
    cov = denil.empirical_covariance(torch.randn(400, 16, generator=torch.Generator().manual_seed(1)))
    layer = denil.PredictedLinear(16, 8, 4, covariance=cov)
    assert layer.columns == 4  # ceil(16 / 4), as a grid would need (random subsets need not cover every input)
    point_sets = []
    for u in layer.u:  # near-white inputs: each learned point predicts itself and little else
        own = (u.abs() > 0.9).nonzero()[:, 0]
        assert len(own) == 4 and len(set(own.tolist())) == 4  # four distinct points, one per atom
        assert float(u.abs().max(0).values.min()) > 0.9 and float(u[u.abs() <= 0.9].abs().max()) < 0.3
        point_sets.append(frozenset(own.tolist()))
    assert len(set(point_sets)) > 1  # the columns read different points


def test_learned_and_predicted_counts() -> None:
    layer = denil.linear(40, 256, "1/10", shape=(40,))
    assert isinstance(layer, denil.PredictedLinear) and layer.columns == 10  # 10 grids of 4 cover 40 points
    assert count_parameters(layer) == 256 * 4 + 256 == layer.learned() + 256
    assert layer.predicted() == 256 * 36  # 90% of the weight
    image = denil.linear(64, 32, "1/10", shape=(8, 8))
    assert count_parameters(image) == 32 * 6 + 32  # a 2x3 grid of the 8x8 pixels
    conv = denil.conv(2, 3, 8, 7, padding=3, share="1/10", bias=False)
    assert isinstance(conv, denil.PredictedConv) and count_parameters(conv) == 8 * 3 * 4  # 2x2 of 7x7 taps
    assert conv.predicted() == 8 * 3 * 45
    assert isinstance(denil.conv(1, 3, 8, 1, share="1/10"), nn.Conv1d)  # nothing to predict in one tap
    hidden = denil.linear(128, 64, "1/4")  # no topology: a random orthonormal dictionary per column
    assert isinstance(hidden, denil.PredictedLinear)
    torch.testing.assert_close(hidden.u[0].t() @ hidden.u[0], torch.eye(32), atol=1e-5, rtol=0)


def test_counted_multiply_adds_are_the_operations_done() -> None:
    layer = denil.PredictedLinear(40, 256, 4, shape=(40,))  # 10 columns
    factored = 10 * 4 * 40 + 256 * 4  # project on each column's dictionary, then v: per input
    assert count_macs(layer, torch.randn(1, 40)) == factored
    assert layer.macs_for_output(torch.zeros(1000, 256)) == 1000 * factored  # cheaper at any batch here
    narrow = denil.PredictedLinear(40, 8, 20, shape=(40,), columns=2)
    assert narrow.macs_for_output(torch.zeros(1, 8)) == 2 * 20 * 40 + 8 * 20  # one input: factored
    # a large batch is cheaper through the built weight: n_out x n_in x a once, then n_in x n_out per input
    assert narrow.macs_for_output(torch.zeros(100, 8)) == 8 * 40 * 20 + 100 * 40 * 8
    for lay in (layer, narrow):  # both orders compute the same function
        x = torch.randn(100, 40)
        via_weight = nn.functional.linear(x, lay.full_weight()[:, 0], lay.bias)
        torch.testing.assert_close(lay(x), via_weight, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lay(x[:1]), via_weight[:1], atol=1e-4, rtol=1e-4)
    conv = denil.PredictedConv(1, 2, 8, (21,), 2, padding=10, bias=False)
    out = conv(torch.randn(1, 2, 40))
    assert count_macs(conv, torch.randn(1, 2, 40)) == 8 * 2 * 2 * 21 + out.numel() * 2 * 21


def test_spaces_build_predicted_layers_and_count_them() -> None:
    mlp = load_space_class("mlp")(predicted=True)
    values: dict[str, Any] = {d.name: d.options[0] for d in mlp.decisions()}
    values.update(layers=2, width_0=128, width_1=64, learned_0="1/10", learned_1="1/4")
    from l2l.nas.mlp import build_mlp

    model = build_mlp(64, 10, mlp.layout(values))  # type: ignore[attr-defined]
    first, second = model[1], model[3]
    assert isinstance(first, denil.PredictedLinear) and first.u.shape[1:] == (64, 6)  # SE over the 8x8 grid
    assert isinstance(second, denil.PredictedLinear) and second.a == 32
    assert "[learned 1/10]" in mlp.describe(Spec("mlp", tuple(values.items())))
    both = load_space_class("mlp")(predicted=True, hashed=True, low_rank=True)
    values = {d.name: d.options[0] for d in both.decisions()}
    values.update(layers=2, active_0="0.2", learned_0="1/10", learned_1="1/4", rank_1="1/2")
    layout = both.layout(values)  # type: ignore[attr-defined]
    assert layout.predicted == ("dense", "1/4") and layout.ranks == ("full", "full")  # hashed, then predicted
    macro = load_space_class("macro")(predicted=True, layers=2, low_rank=True)
    values = {d.name: d.options[0] for d in macro.decisions() if d.kind != "anchor"}
    values.update(l0_width=7, l0_learned="1/4", l0_rank="1/4", l1_width=5, l1_learned="dense", l1_rank="1/2")
    values.update(l0_inputs=(), l1_inputs=(True,))
    net, example = macro.build(values, seed=0)  # type: ignore[attr-defined]
    assert isinstance(net.blocks[0][0], denil.PredictedConv)  # predicted, so full rank
    assert isinstance(net.blocks[1][0], nn.Sequential)  # low rank
    assert count_macs(net, example) > 0 and "learned 1/4" in macro.describe(Spec("macro", tuple(values.items())))


@pytest.mark.parametrize("name", ["mlp", "macro"])
class TestSpacesWithPredictedLayers(SpaceContract):
    @pytest.fixture
    def space_class(self, name: str) -> type[SearchSpace]:
        return load_space_class(name)

    @pytest.fixture
    def fast_options(self, name: str) -> dict[str, Any]:
        extra = {"layers": 2} if name == "macro" else {"dataset": "mnist1d", "widths": "16,32"}
        return {"epochs": 1, "predicted": True, **extra}

    @pytest.fixture
    def expected(self) -> Expected:
        return Expected(curves=("val_acc",), costs=("params", "flops"), test=("test_acc",), val_acc=True)


@pytest.mark.parametrize("shape", [(40,), (21,), (8, 8), (7, 7), (28, 28)])
@pytest.mark.parametrize("choice", ["1/2", "1/4", "1/10"])
def test_a_columns_alpha_points_are_distinct_coordinates_of_the_weight(shape: tuple[int, ...], choice: str) -> None:
    a = denil.learned_points(choice, math.prod(shape))
    assert a is not None
    grid = denil.grid_shape(shape, a)
    for column in range(6):
        points = denil.alpha_points(shape, grid, column).long()
        assert len(points) == math.prod(grid) <= a
        assert len({tuple(p) for p in points.tolist()}) == len(points)  # none coincide, jittered or not
        assert bool((points >= 0).all()) and all(bool((points[:, d] < s).all()) for d, s in enumerate(shape))
    # column 0 sits at the cells' centres: 4 cells of 10 positions each, every 10th position from the 6th
    assert denil.alpha_points((40,), (4,), 0)[:, 0].tolist() == [5.0, 15.0, 25.0, 35.0]


def test_a_joint_grid_predicts_a_few_tap_convolution_over_its_channels_and_taps() -> None:
    """5-tap filters over 32 channels: one tap per channel would predict 80%; a grid over (channel, tap)
    learns 10 of each filter's 160 values, reads those channels only, and is smooth along the taps."""
    torch.manual_seed(0)
    conv = denil.PredictedConv(1, 32, 16, (5,), 16, padding=2, columns=16, length=0.5, bias=False, joint=True)
    assert conv.learned() == 16 * 10 and conv.predicted() == 16 * 150  # a 10 x 1 grid: 93.75% predicted
    assert count_parameters(conv) == conv.learned()
    w = conv.full_weight().reshape(16, 32, 5)
    for o in range(16):
        group = int(conv.group[o])
        channels = set(denil.alpha_points((32, 5), (10, 1), group)[:, 0].long().tolist())
        read = {c for c in range(32) if w[o, c].abs().max() > 1e-6}
        assert read == channels and len(channels) == 10  # no interpolation across channels
        for c in channels:  # along the taps an SE bump around the learned tap: all five nonzero, one sign
            assert bool((w[o, c] > 0).all()) or bool((w[o, c] < 0).all())
    x = torch.randn(3, 32, 40)
    torch.testing.assert_close(conv(x), nn.functional.conv1d(x, w, None, 1, 2), atol=1e-5, rtol=0)
    out = conv(x[:1])
    assert count_macs(conv, x[:1]) == 16 * 10 * 160 + out.numel() * 32 * 5  # build the filters, then convolve
    with pytest.raises(ValueError, match=r"joint \(channel, tap\) grid is built for 1-D convolutions"):
        denil.PredictedConv(2, 3, 4, (3, 3), 2, joint=True)
