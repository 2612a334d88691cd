"""Character language modelling: corpus splits, the recurrent loop against nn.LSTM, searched cells, training."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pytest
import torch
from torch import nn

from l2l.nas.charlm import CORPUS, CharLM, LMConfig, TorchRNN, bits_per_char, load_corpus, one_char_cost, train_lm
from l2l.nas.cost import count_macs
from l2l.nas.rnn_cells import Cell, CellRNN, ENASCell, ENASNode, LSTMCell, TreeCell, TreeSpec, enas_loose_ends
from l2l.search_spaces import load_space


def test_corpus_is_split_by_position_without_shuffling() -> None:
    corpus = load_corpus()
    text = CORPUS.read_text(encoding="ascii")
    joined = torch.cat([corpus.train, corpus.val, corpus.test])
    assert "".join(corpus.vocab[i] for i in joined[:200].tolist()) == text[:200]
    assert len(joined) == len(text)
    assert "".join(corpus.vocab[i] for i in corpus.test[-50:].tolist()) == text[-50:]
    assert len(corpus.val) == len(corpus.test) == int(0.05 * len(text))
    assert corpus.n_vocab == len(set(text))


def test_the_loop_with_a_textbook_lstm_cell_matches_nn_lstm() -> None:
    torch.manual_seed(0)
    ref = nn.LSTM(5, 7)
    cell = LSTMCell(5, 7)
    with torch.no_grad():
        cell.w_x.weight.copy_(ref.get_parameter("weight_ih_l0"))
        cell.w_x.bias.copy_(ref.get_parameter("bias_ih_l0"))
        cell.w_h.weight.copy_(ref.get_parameter("weight_hh_l0"))
        cell.w_h.bias.copy_(ref.get_parameter("bias_hh_l0"))
    loop = CellRNN(cell)
    x = torch.randn(6, 3, 5)
    state = (torch.randn(1, 3, 7), torch.randn(1, 3, 7))
    out_ref, (h_ref, c_ref) = ref(x, state)
    out, (h, c) = loop(x, state)
    assert out.shape == out_ref.shape == (6, 3, 7) and h.shape == h_ref.shape and c.shape == c_ref.shape
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-6)
    (out.square().sum() + c.sum()).backward()
    (out_ref.square().sum() + c_ref.sum()).backward()
    ref_grad = ref.get_parameter("weight_hh_l0").grad
    assert cell.w_h.weight.grad is not None and ref_grad is not None
    torch.testing.assert_close(cell.w_h.weight.grad, ref_grad, rtol=1e-4, atol=1e-6)


def _tree() -> TreeSpec:
    acts = ("tanh", "relu", "sigmoid", "identity") * 3 + ("tanh", "relu", "tanh")
    combine = ("add", "mul") * 7 + ("add",)
    return TreeSpec(combine, acts, inject_at=9, inject_combine="add", inject_act="tanh", cell_from=3)


@pytest.mark.parametrize("kind", ["enas", "tree"])
def test_searched_cells_have_lstm_shapes_and_every_parameter_learns(kind: str) -> None:
    torch.manual_seed(1)
    if kind == "enas":
        nodes = [ENASNode(0, "tanh"), ENASNode(0, "relu"), ENASNode(0, "sigmoid"), ENASNode(2, "identity")]
        assert enas_loose_ends(nodes) == [1, 3]
        cell: Cell = ENASCell(nodes, 5, 7, rank="1/2")
    else:
        cell = TreeCell(_tree(), 5, 7)
    rnn = CellRNN(cell)
    x = torch.randn(6, 3, 5, requires_grad=True)
    out, state = rnn(x, rnn.initial_state(3, torch.device("cpu")))
    assert out.shape == (6, 3, 7)
    out2, _ = rnn(x, state)  # the returned state feeds the next chunk
    (out.sum() + out2.sum()).backward()
    for name, p in rnn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_an_enas_step_is_the_papers_highway_formula() -> None:
    """h_j = c * f(W_h z) + (1 - c) * h_i with c = sigmoid(W_c z), written out by hand, node by node."""
    torch.manual_seed(2)
    nodes = [ENASNode(0, "tanh"), ENASNode(0, "relu"), ENASNode(1, "sigmoid")]
    cell = ENASCell(nodes, 3, 4)
    x, h_prev = torch.randn(2, 3), torch.randn(2, 4)

    def highway(z: torch.Tensor, prev: torch.Tensor, f: Any) -> torch.Tensor:
        c = torch.sigmoid(z[:, :4])
        return c * f(z[:, 4:]) + (1 - c) * prev

    n0 = highway(cell.w_x(x) + cell.w_h(h_prev), h_prev, torch.tanh)
    n1 = highway(cell.w_nodes[0](n0), n0, torch.relu)
    n2 = highway(cell.w_nodes[1](n1), n1, torch.sigmoid)
    out, state = cell.step(cell.project(x), h_prev)
    torch.testing.assert_close(out, n2, rtol=1e-6, atol=1e-6)  # node 2 is the only one no node reads
    assert state is out


def test_cells_reject_bad_structures_with_their_names() -> None:
    with pytest.raises(ValueError, match=r"node 2 reads node 2; only nodes 0..1 come before it"):
        ENASCell([ENASNode(0, "tanh"), ENASNode(0, "tanh"), ENASNode(2, "tanh")], 4, 4)
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'"):
        ENASCell([ENASNode(0, "gelu")], 4, 4)
    with pytest.raises(ValueError, match=r"tree nodes are 0..14; got 15 and 3"):
        TreeCell(TreeSpec(("add",) * 15, ("tanh",) * 15, 15, "add", "tanh", 3), 4, 4)


def test_training_learns_and_is_repeatable() -> None:
    corpus = load_corpus()
    config = LMConfig(steps=40, batch_size=16, bptt=16, lr=0.01, evals=2)

    def run() -> tuple[float, float, list[float]]:
        torch.manual_seed(0)
        model = CharLM(corpus.n_vocab, 16, TorchRNN("gru", 16, 32))
        out = train_lm(model, corpus, config, seed=3)
        return out.val_bpc, out.test_bpc, out.curves["val_bpc"]

    val, test, curve = run()
    assert val < 4.2 < math.log2(corpus.n_vocab)  # far better than a uniform guess (6.25 bits)
    assert len(curve) == 2 and curve[-1] < curve[0]
    assert test == pytest.approx(run()[1])


def test_bits_per_char_of_an_untrained_model_is_near_uniform() -> None:
    corpus = load_corpus()
    torch.manual_seed(0)
    model = CharLM(corpus.n_vocab, 8, TorchRNN("lstm", 8, 8))
    nn.init.zeros_(model.decoder.weight)
    nn.init.zeros_(model.decoder.bias)
    assert bits_per_char(model, corpus.val[:5000], torch.device("cpu")) == pytest.approx(math.log2(corpus.n_vocab))


def test_costs_per_character_by_hand() -> None:
    lstm = CharLM(10, 4, TorchRNN("lstm", 4, 6))
    # one character: the LSTM's 4 gates x 6 units x (4 inputs + 6 recurrent) and the decoder 6 -> 10
    assert one_char_cost(lstm, torch.device("cpu"))["flops"] == 4 * 6 * (4 + 6) + 6 * 10
    gru = nn.GRU(4, 6, num_layers=2)
    assert count_macs(gru, torch.randn(3, 1, 4)) == 3 * (3 * 6 * (4 + 6) + 3 * 6 * (6 + 6))
    enas = CharLM(10, 4, CellRNN(ENASCell([ENASNode(0, "tanh"), ENASNode(0, "relu")], 4, 6, rank=2)))
    # input 4 -> 12; recurrent 6 -> 2 -> 12 (rank 2); node 1: 6 -> 2 -> 12; decoder 6 -> 10
    assert one_char_cost(enas, torch.device("cpu"))["flops"] == 4 * 12 + 2 * (6 * 2 + 2 * 12) + 6 * 10


def test_space_trains_a_cell_and_reports_bits_per_char() -> None:
    from l2l.search_spaces import Context, token_sizes

    space = load_space("rnn_cell", {"cell": "tree", "steps": 6, "hidden": 16, "low_rank": True})
    sizes = token_sizes(space.decisions())
    assert len(sizes) == 2 * 15 + 4 + 1
    spec = space.decode(tuple([0] * len(sizes)))
    result = space.evaluate(spec, Context(child=0, seed=0))
    assert result.ok and 0 < result.reward < 10 / 4  # Zoph & Le's c / ppl^2 with c = 10, ppl >= 2
    assert result.test["test_bpc"] > 0 and result.cost["params"] > 0
    assert result.val_loss is not None
    assert result.reward == pytest.approx(10 / (2 ** result.info["val_bpc"]) ** 2)


def test_cli_searches_cells_and_retrains_the_best_for_more_steps(tmp_path: object) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    storage = f"sqlite:///{tmp_path}/lm.db"
    runner = CliRunner()
    common = ["--storage", storage]
    opts = ["-S", "steps=3", "-S", "hidden=16", "-S", "nodes=3"]
    out = runner.invoke(
        app, ["search", "--space", "rnn_cell", *opts, "--children", "3", "--executor", "local", *common]
    )
    assert out.exit_code == 0, out.output
    top = runner.invoke(app, ["runs", "top", "1", "-k", "2", *common])
    assert top.exit_code == 0 and "bpc" in top.output and "n0=" in top.output
    best = runner.invoke(app, ["runs", "best", "1", "--retrain", "--steps", "6", *common])
    assert best.exit_code == 0, best.output
    assert "retrained for 6 steps: validation bpc " in best.output and "test_bpc " in best.output
    # the export has the validation bits per character as a column, as the tables show it (it was in info only)
    rows = list(csv.DictReader(io.StringIO(runner.invoke(app, ["runs", "export", "1", *common]).output)))
    assert len(rows) == 3 and all(float(r["val_bpc"]) == json.loads(r["info"])["val_bpc"] for r in rows)


def test_recurrent_projections_can_be_hashed_and_count_their_cost() -> None:
    from l2l.nas.hashed import HashedLinear
    from l2l.search_spaces import Context, Spec

    space = load_space("rnn_cell", {"nodes": 2, "steps": 2, "hidden": 40, "low_rank": True, "hashed": True})
    spec = space.decode(tuple([0] * len(space.decisions())))
    values = dict(spec.items())
    values.update(rank="1/4", active="0.2")  # hashed wins: the projections keep their full rank
    spec = Spec(spec.space, tuple(values.items()))
    model = space.build(spec, seed=0)  # type: ignore[attr-defined]
    cell = model.rnn.cell
    assert isinstance(cell.w_h, HashedLinear) and cell.w_h.k == 16  # 20% of 2 x 40 outputs
    result = space.evaluate(spec, Context(seed=0))
    assert result.ok and "active=0.2" in str(result.info["arch"])
    # per character: input 32 -> 80, two hashed projections (16 of 80 outputs from 40 inputs, plus SimHash
    # of 8 tables x 6 bits), the decoder 40 -> 76
    assert result.cost["flops"] == 32 * 80 + 2 * (16 * 40 + 8 * 6 * 40) + 40 * 76
    # so the rank is no part of a hashed cell: one architecture whatever it says, and not described
    other = Spec(spec.space, tuple({**values, "rank": "1/16"}.items()))
    assert space.canonical(other) == space.canonical(spec) and "rank=" not in space.describe(other)
    dense = Spec(spec.space, tuple({**values, "active": "1.0"}.items()))
    assert space.canonical(Spec(spec.space, tuple({**dict(dense.items()), "rank": "1/16"}.items()))) != dense


def test_a_model_whose_outputs_blow_up_fails_instead_of_finishing_with_absurd_bits() -> None:
    """A cell's exploding state gave 4e25 validation bits per character, recorded as a finished child."""
    from l2l.nas.train import ChildDiverged

    corpus = load_corpus()
    torch.manual_seed(0)
    model = CharLM(corpus.n_vocab, 8, TorchRNN("lstm", 8, 8))
    with torch.no_grad():
        model.decoder.weight.mul_(1e4)  # logits in the thousands: finite, and hopeless
    with pytest.raises(ChildDiverged, match=r"validation bits per character became .* at step 2 \(over 10 times"):
        train_lm(model, corpus, LMConfig(steps=2, batch_size=4, bptt=8, evals=1), seed=0)


def test_an_option_the_tree_cell_does_not_use_is_refused() -> None:
    """`-S cell=tree -S nodes=20` was taken, stored with the run, and changed nothing."""
    from l2l.search_spaces import SpaceError, load_space

    with pytest.raises(SpaceError, match="rnn_cell option nodes applies to cell=enas; the tree cell has its 15 nodes"):
        load_space("rnn_cell", {"cell": "tree", "nodes": 20})
    assert "nodes" not in load_space("rnn_cell", {"cell": "tree"}).options
    assert "nodes" not in load_space("rnn_cell", {"cell": "tree", "nodes": 8}).options  # as runs stored it before
    assert load_space("rnn_cell", {}).options["nodes"] == 8


def test_a_language_models_blow_up_is_named_by_what_happened() -> None:
    """A NaN was reported as "became nan ..., over 10 times a uniform guess's": two conditions in one."""
    from l2l.nas.charlm import _check_finite
    from l2l.nas.train import ChildDiverged

    with pytest.raises(ChildDiverged, match=r"became nan at step 6 \(not finite; the limit is 10 times a uniform"):
        _check_finite("validation", float("nan"), 6.248, 6)
    with pytest.raises(ChildDiverged, match=r"became 1e\+09 at step 6 \(over 10 times a uniform guess's 6.248\)"):
        _check_finite("validation", 1e9, 6.248, 6)
    _check_finite("validation", 7.0, 6.248, 6)  # worse than a guess, but not blown up
