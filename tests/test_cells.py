"""NAS-Bench-201 cells built for real: the cell's math, the network on 1-D and 2-D inputs, cost counts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from l2l.nas.cells import CELL_OPS, Cell, build_cell_network
from l2l.nas.cost import count_macs, count_parameters
from l2l.search_spaces import load_space


def test_cell_of_skips_and_zeros_is_the_sum_over_paths() -> None:
    x = torch.randn(2, 3, 7)
    # all skip: node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    assert torch.allclose(Cell(["skip_connect"] * 6, 3, dims=1)(x), 4 * x)
    assert torch.count_nonzero(Cell(["none"] * 6, 3, dims=1)(x)) == 0
    # only the direct edge 0 -> 3 is a skip: the output is the input
    only_direct = ["none", "none", "none", "skip_connect", "none", "none"]
    assert torch.allclose(Cell(only_direct, 3, dims=1)(x), x)


@pytest.mark.parametrize(("shape", "dims"), [((1, 40), 1), ((1, 8, 8), 2), ((3, 32, 32), 2)])
def test_network_runs_forward_and_backward_on_1d_and_2d_inputs(shape: tuple[int, ...], dims: int) -> None:
    net = build_cell_network(
        ["nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none", "skip_connect"],
        shape,
        10,
        channels=4,
        cells_per_stage=1,
    )
    x = torch.randn(5, *shape)
    out = net(x.flatten(1) if dims == 1 else x)
    assert out.shape == (5, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_macs_count_convolutions_and_linear_layers() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 10, 5))
    # conv: 4 channels x 10 positions x (2 inputs x 3 taps) = 240; linear: 40 x 5 = 200
    assert count_macs(model, torch.randn(1, 2, 10)) == 240 + 200
    assert count_parameters(model) == (2 * 3 * 4 + 4) + (40 * 5 + 5)


def test_cell_result_carries_cost_and_the_published_figure() -> None:
    space = load_space("nb201_cell", {"dataset": "digits", "epochs": 1})
    spec = space.decode((3, 1, 3, 1, 3, 3))
    result = space.evaluate(spec, __import__("search_spaces").Context(seed=0))
    assert result.ok and result.val_acc is not None and result.val_acc > 0.3
    assert result.cost["params"] > 0 and result.cost["flops"] > 0 and result.cost["latency_s"] > 0
    assert result.info["arch"].startswith("|nor_conv_3x3~0|")
    assert 80 < result.info["nb201_c10_test"] < 95  # the same cell's published CIFAR-10 accuracy


def test_unknown_op_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown cell op 'conv_7x7'; known: none, skip_connect"):
        Cell(["conv_7x7"] + ["none"] * 5, 4, dims=2)
    assert CELL_OPS[0] == "none"


def test_mnas_reward_trades_accuracy_for_cost() -> None:
    from l2l.controllers import ControllerError
    from l2l.controllers.rewards import get_transform

    t = get_transform("mnas(flops, 1e5, -0.07)")
    assert t({"reward": 0.9, "val_acc": 0.9, "cost_flops": 1e5}) == pytest.approx(0.9)
    assert t({"reward": 0.9, "val_acc": 0.9, "cost_flops": 2e5}) == pytest.approx(0.9 * 2**-0.07)
    # a model half the target's cost may be a little less accurate and still win
    assert t({"val_acc": 0.89, "reward": 0.89, "cost_flops": 5e4}) > t(
        {"val_acc": 0.9, "reward": 0.9, "cost_flops": 1e5}
    )
    # a language model's reward is its negated bits per character: cheaper must still be better (multiplied,
    # the cheaper of two equal rewards came out worse), and better still better at one cost
    lm = get_transform("mnas(flops,2000,-0.5)")
    cheap, dear = {"reward": -5.557, "cost_flops": 2336.0}, {"reward": -5.910, "cost_flops": 3008.0}
    assert lm(cheap) > lm(dear) and lm({**cheap, "cost_flops": 3008.0}) > lm({**dear, "cost_flops": 3008.0})
    assert lm({"reward": -5.0, "cost_flops": 1000.0}) > lm({"reward": -5.0, "cost_flops": 4000.0})
    with pytest.raises(ControllerError, match="needs the cost 'latency_s'; the child reported flops"):
        get_transform("mnas(latency_s,1e-3,-0.07)")({"val_acc": 0.9, "reward": 0.9, "cost_flops": 1.0})
    with pytest.raises(ControllerError, match="weight <= 0"):
        get_transform("mnas(flops,1e5,0.5)")


def test_pareto_front_keeps_only_undominated_children() -> None:
    from l2l.runs.plots import pareto_front

    points = [(10.0, 0.8, 0), (5.0, 0.7, 1), (20.0, 0.79, 2), (5.0, 0.6, 3), (30.0, 0.9, 4), (1.0, 0.5, 5)]
    assert [n for _, _, n in pareto_front(points)] == [5, 1, 0, 4]


def test_cost_aware_search_and_pareto_plot_from_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.runs.store import Store

    storage = f"sqlite:///{tmp_path / 'p.db'}"
    runner = CliRunner()
    args = ["search", "--space", "nb201_cell", "-S", "epochs=1", "-S", "dataset='digits'", "-n", "4", "-m", "2"]
    args += ["-C", "reward_transform='mnas(flops,1e5,-0.07)'", "--executor", "local", "-q", "--storage", storage]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    for c in Store(storage).children(1):
        expected = c.val_acc * (c.metrics["cost"]["flops"] / 1e5) ** -0.07
        assert c.controller_reward == pytest.approx(expected)
    png = tmp_path / "pareto.png"
    out = runner.invoke(app, ["plot", "pareto", "1", "-o", str(png), "--storage", storage])
    assert out.exit_code == 0 and png.stat().st_size > 0 and "validation accuracy" in out.output
    out = runner.invoke(app, ["plot", "pareto", "1", "--cost", "watts", "--storage", storage])
    assert out.exit_code == 1 and "reports the cost 'watts'; reported: flops, latency_s, params" in out.output
    # the winner: drawn as its cell graph, and retrained from its stored spec with a longer schedule
    arch = tmp_path / "arch.png"
    out = runner.invoke(app, ["plot", "arch", "1", "-o", str(arch), "--storage", storage])
    assert out.exit_code == 0 and arch.stat().st_size > 0, out.output
    out = runner.invoke(app, ["runs", "best", "1", "--retrain", "--epochs", "2", "--storage", storage])
    assert out.exit_code == 0, out.output
    assert "best of run 1: child" in out.output and "retrained for 2 epochs: validation acc 0." in out.output
    assert "test_acc 0." in out.output.split("retrained")[1]  # the test metrics the space declares
    out = runner.invoke(app, ["plot", "arch", "1", "--rank", "9", "--storage", storage])
    assert out.exit_code == 1 and "--rank 9 does not exist" in out.output


def test_graphs_of_spaces_name_their_ops() -> None:
    cell = load_space("nb201", {})
    graph = cell.graph(cell.decode((3, 0, 1, 4, 0, 2)))
    assert graph["edges"] == [
        [0, 1, "nor_conv_3x3"],
        [1, 2, "skip_connect"],
        [0, 3, "avg_pool_3x3"],
        [2, 3, "nor_conv_1x1"],
    ]
    mlp = load_space("mlp", {})
    g = mlp.graph(mlp.decode((1, 4, 0, 2, 1, 0, 0, 1, 2)))
    assert g["nodes"][0] == "input" and g["nodes"][-1] == "classifier" and len(g["nodes"]) == 4


@pytest.mark.parametrize(("dataset", "side", "classes"), [("cifar10", 32, 10), ("imagenet16-120", 16, 120)])
def test_nb201_reports_the_cost_of_the_benchmarks_network_as_if_built(dataset: str, side: int, classes: int) -> None:
    """A table lookup reported no cost, so no cost-aware reward or Pareto plot on nb201: its costs are counted from
    the layers of the network the benchmark trained, and equal l2l's count of that network built."""
    import random

    from l2l.search_spaces import Context

    space = load_space("nb201", {"dataset": dataset})
    draw = random.Random(0)
    for _ in range(3):
        tokens = [draw.randrange(len(CELL_OPS)) for _ in space.decisions()]
        spec = space.decode(tokens)
        ops = [str(spec[d.name]) for d in space.decisions()]
        built = build_cell_network(ops, (3, side, side), classes, channels=16, cells_per_stage=5).eval()
        cost = space.evaluate(spec, Context(seed=0)).cost
        assert cost == {"params": count_parameters(built), "flops": count_macs(built, torch.zeros(1, 3 * side**2))}
    assert load_space("nb201").cost_metrics == ("params", "flops")
