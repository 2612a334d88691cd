"""SLIDE's sparse output layer and sampled softmax: the dense layer when all is active, gradients on the
active rows only, the label always active, multiply-adds counted as done; the extreme-classification task."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

from l2l.nas.cost import count_parameters
from l2l.nas.extreme import make_extreme
from l2l.nas.slide import (
    DenseOutput,
    PredictedOutput,
    SampledSoftmax,
    SlideOutput,
    SparseDenseAdam,
    output_layer,
)
from l2l.nas.wordlm import load_words
from l2l.search_spaces.api import Context, Spec
from l2l.search_spaces.word_lm import OUTPUTS, WordLMSpace


def test_slide_with_every_neuron_active_is_linear_plus_cross_entropy_in_values_gradients_and_steps() -> None:
    torch.manual_seed(0)
    layer = SlideOutput(12, 40, active=1.0, tables=2)
    dense = nn.Linear(12, 40)
    with torch.no_grad():
        dense.weight.copy_(layer.weight[:, :-1])
        dense.bias.copy_(layer.weight[:, -1])
    h = torch.randn(9, 12, requires_grad=True)
    h2 = h.detach().clone().requires_grad_(True)
    y = torch.randint(0, 40, (9,))
    loss, ref = layer.loss(h, y), F.cross_entropy(dense(h2), y)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    assert layer.weight.grad is not None and layer.weight.grad.is_sparse
    grad = layer.weight.grad.to_dense()
    torch.testing.assert_close(grad[:, :-1], dense.weight.grad)
    torch.testing.assert_close(grad[:, -1], dense.bias.grad)
    torch.testing.assert_close(h.grad, h2.grad)
    torch.testing.assert_close(layer.logits(h), dense(h))
    # lazy Adam (RowAdam) on a gradient covering every row is Adam (up to where eps enters the denominator)
    SparseDenseAdam(layer, 0.01).step()
    torch.optim.Adam(dense.parameters(), lr=0.01).step()
    torch.testing.assert_close(layer.weight.detach()[:, :-1], dense.weight.detach(), atol=1e-4, rtol=0)


def test_slide_gradient_is_the_active_set_softmax_and_touches_only_active_rows() -> None:
    torch.manual_seed(1)
    layer = SlideOutput(16, 2000, active=0.02, tables=4, rebuild_first=100)
    h = torch.randn(6, 16, requires_grad=True)
    y = torch.randint(0, 2000, (6,))
    torch.manual_seed(7)
    ids, counts, _ = layer.active_set(h.detach(), y)
    torch.manual_seed(7)  # the same draws again inside the loss
    layer.loss(h, y).backward()
    assert layer.weight.grad is not None
    touched = layer.weight.grad.coalesce().indices()[0]
    assert set(touched.tolist()) <= set(ids.unique().tolist())
    assert len(touched) < 2000 * 0.2  # a few percent of the rows, not the layer
    # the same loss written densely: the full logits with everything outside the active set at -inf
    weight = layer.weight.detach().clone().requires_grad_(True)
    keep = torch.where(counts, 0.0, -math.inf)  # a repeated id's first copy counts
    mask = torch.full((6, 2000), -math.inf).scatter_reduce(1, ids, keep, "amax")
    scores = torch.cat([h.detach(), torch.ones(6, 1)], 1) @ weight.t() + mask
    F.cross_entropy(scores, y).backward()
    torch.testing.assert_close(layer.weight.grad.to_dense(), weight.grad)


def test_the_true_label_is_always_active_and_counted_once() -> None:
    torch.manual_seed(2)
    layer = SlideOutput(8, 500, active=0.05, tables=3)
    for _ in range(5):
        y = torch.randint(0, 5, (64,))  # few labels: each is often retrieved by the tables too
        ids, counts, label = layer.active_set(torch.randn(64, 8), y)
        assert torch.equal(ids.gather(1, label[:, None]).squeeze(1), y)
        assert bool(counts.gather(1, label[:, None]).all())
        for row, keep in zip(ids, counts, strict=True):  # every neuron counted exactly once
            assert sorted(row[keep].tolist()) == sorted(set(row.tolist()))


@pytest.fixture
def sampled_product_counted() -> Iterator[None]:
    """PyTorch's flop counter has no formula for the sampled product SLIDE's kernel does; for the test's
    length, one: a multiply and an add for each of the pattern's entries times the inner dimension (what
    the operation computes, whatever the layer thinks it asked for)."""
    op = torch.ops.aten.sparse_sampled_addmm
    assert op not in flop_registry

    @register_flop_formula(op, get_raw=True)
    def flops(pattern: torch.Tensor, mat1: torch.Tensor, *args: object, **kwargs: object) -> int:
        return 2 * pattern._nnz() * mat1.shape[1]

    yield
    del flop_registry[op]


@pytest.mark.parametrize("kind", ["dense", "slide", "slide_tail", "sampled_uniform", "sampled_unigram", "predicted"])
def test_counted_multiply_adds_are_the_products_done(kind: str, sampled_product_counted: None) -> None:
    torch.manual_seed(3)
    layer = output_layer(kind, 16, 3000, 0.05, torch.arange(3000.0), seed=0)
    h, y = torch.randn(10, 16), torch.randint(0, 3000, (10,))
    before = layer.macs
    with FlopCounterMode(display=False) as counter:
        layer.loss(h, y)
    assert layer.macs - before == counter.get_total_flops() // 2 > 0
    if isinstance(layer, SlideOutput):  # a table rebuild counts what it hashes
        before = layer.macs
        with FlopCounterMode(display=False) as counter:
            layer.rebuild()
        assert layer.macs - before == counter.get_total_flops() // 2 == 3000 * layer.tables * layer.bits * 16
        # hashing and 151 active rows of 17 products each (75 + 1 and 75 drawn for the batch with a tail),
        # against 3000 for the dense layer
        assert layer.k + getattr(layer, "m", 0) == 150
    if isinstance(layer, PredictedOutput):  # (h U) [v | b]^T with 16 x 5% = 0 -> 1 learned value a row
        assert layer.a == 1 and layer.macs_per_example() == 16 * 1 + 3000 * 2


def test_predicted_output_is_u_v_with_a_fixed_dictionary_the_optimizer_never_updates() -> None:
    torch.manual_seed(5)
    layer = PredictedOutput(40, 300, share=0.1, seed=2)
    assert layer.a == 4 and "u" in dict(layer.named_buffers()) and "u" not in dict(layer.named_parameters())
    torch.testing.assert_close(layer.u.t() @ layer.u, torch.eye(4))  # orthonormal, random: no topology
    # the full weight it scores is U v plus the bias, every class (a full softmax)
    h, y = torch.randn(7, 40), torch.randint(0, 300, (7,))
    weight = layer.weight.detach().clone()
    torch.testing.assert_close(layer.logits(h), h @ (weight[:, :-1] @ layer.u.t()).t() + weight[:, -1])
    # learned: v and the bias only (10% of the row plus one), which is what the `params` cost counts
    assert count_parameters(layer) == 300 * (4 + 1) < 300 * 41 / 8
    u = layer.u.clone()
    opt = SparseDenseAdam(layer, 0.1)
    for _ in range(3):
        opt.zero_grad()
        layer.loss(h, y).backward()
        opt.step()
    assert torch.equal(layer.u, u) and not torch.equal(layer.weight.detach(), weight)
    assert layer.examples == 21 and layer.macs == 21 * (40 * 4 + 300 * 5)


def test_word_lm_space_trains_the_predicted_output_and_counts_learned_parameters_and_its_products() -> None:
    space = WordLMSpace(max_steps=2, eval_words=200)
    assert {"predicted 1/4", "predicted 1/10"} <= set(OUTPUTS)
    spec = Spec(space="word_lm", choices=(("embed", 32), ("hidden", 32), ("output", "predicted 1/4"), ("lr", "0.01")))
    result = space.evaluate(spec, Context(child=0, seed=0))
    n = load_words().n_vocab
    embed_lstm = n * 32 + 4 * 32 * (32 + 32) + 8 * 32  # the LSTM's two biases
    assert result.cost["params"] == embed_lstm + n * (8 + 1)  # 8 = 32 / 4 learned values a row, and the bias
    assert result.cost["flops"] == 4 * 32 * 64 + 32 * 8 + n * 9
    assert math.isfinite(result.test["test_ppl"])


@pytest.mark.parametrize(
    ("budget", "cap", "epochs"),
    [({}, 2, 1), ({"epochs": 2}, 0, 2), ({"steps": 5}, 5, 1), ({"epochs": 2, "steps": 5}, 5, 2)],
)
def test_a_word_lm_retraining_budget_sets_whole_epochs_or_its_own_cut(
    monkeypatch: pytest.MonkeyPatch, budget: dict[str, int], cap: int, epochs: int
) -> None:
    """A search cut at max_steps=2; a retraining with --epochs trains whole epochs (it printed "retrained for
    1 epoch" after 2 updates), and --steps sets the cut."""
    from l2l.nas import wordlm

    seen: list[int] = []

    def train_epoch(model: object, corpus: object, optimizer: object, config: wordlm.WordLMConfig) -> float:
        seen.append(config.max_steps)
        return 0.0

    monkeypatch.setattr(wordlm, "train_epoch", train_epoch)
    space = WordLMSpace(max_steps=2, eval_words=50)
    spec = Spec(space="word_lm", choices=(("embed", 32), ("hidden", 32), ("output", "dense"), ("lr", "0.01")))
    assert space.evaluate(spec, Context(child=0, seed=0, budget=budget)).status == "done"
    assert seen == [cap] * epochs


def test_sampled_softmax_corrects_by_log_q_and_drops_accidental_hits() -> None:
    torch.manual_seed(4)
    counts = torch.tensor([100.0, 1.0, 1.0, 0.0])
    layer = SampledSoftmax(3, 4, active=1.0, frequencies=counts)
    q = (counts + 1) / (counts + 1).sum()
    torch.testing.assert_close(layer.log_q, (q * 4).log())
    h, y = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    torch.manual_seed(9)
    loss = layer.loss(h, y)
    torch.manual_seed(9)
    negatives = torch.searchsorted(layer.cdf, torch.rand(4, dtype=torch.float64))
    logits = torch.cat([h, torch.ones(5, 1)], 1) @ layer.weight.detach().t() - layer.log_q
    neg = logits[:, negatives].masked_fill(negatives[None] == 0, -math.inf)
    torch.testing.assert_close(loss, F.cross_entropy(torch.cat([logits[:, :1], neg], 1), y))
    assert isinstance(layer, SampledSoftmax) and not isinstance(layer, DenseOutput)


def test_extreme_task_is_deterministic_and_power_law() -> None:
    a = make_extreme(n_labels=5000, n_features=2000, n_train=40_000, n_val=100, n_test=100, seed=3)
    b = make_extreme.__wrapped__(n_labels=5000, n_features=2000, n_train=40_000, n_val=100, n_test=100, seed=3)
    assert torch.equal(a.train.features, b.train.features) and torch.equal(a.test.labels, b.test.labels)
    c = make_extreme.__wrapped__(n_labels=5000, n_features=2000, n_train=40_000, n_val=100, n_test=100, seed=4)
    assert not torch.equal(a.train.labels, c.train.labels)
    counts = a.label_counts().sort(descending=True).values.double()
    ranks = torch.arange(1, 101, dtype=torch.float64)
    slope = torch.linalg.lstsq(torch.stack([ranks.log(), torch.ones(100)], 1), counts[:100].log()[:, None]).solution
    assert -1.2 < float(slope[0]) < -0.8  # Zipf with exponent 1: count ~ 1 / rank
    assert a.train.features.shape == (40_000, 8) and int(a.train.features.max()) < 2000


def test_word_corpus_is_the_issue_sized_vocabulary_split_by_position() -> None:
    corpus = load_words()
    assert len(corpus.train) + len(corpus.val) + len(corpus.test) == 188_005
    assert corpus.n_vocab == 11_920 and corpus.vocab[-1] == "<unk>"  # the training split's words and <unk>
    assert int(corpus.counts().sum()) == len(corpus.train)


def test_clipping_scales_sparse_and_dense_gradients_by_their_joint_norm() -> None:
    """Every output layer kind is clipped alike: the sparse gradients (SLIDE's rows, the embedding's) count in
    the norm and are scaled with the dense ones, exactly as `clip_grad_norm_` scales the same gradients made
    dense."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 8, sparse=True), nn.Linear(8, 3))
    x = torch.tensor([1, 4, 4, 9])  # a repeated row: the embedding's sparse gradient is uncoalesced
    model(x).square().sum().backward()
    dense_copy = [p.grad.to_dense().clone() for p in model.parameters()]  # type: ignore[union-attr]
    expected_norm = float(torch.cat([g.flatten() for g in dense_copy]).norm())
    opt = SparseDenseAdam(model, lr=0.1)
    assert opt.clip_grad_norm(0.5) == pytest.approx(expected_norm, rel=1e-6)
    rows = model[0].weight.grad._indices()[0]  # type: ignore[union-attr,operator]
    assert rows.tolist() == [1, 4, 9]  # the repeated row summed once, here, ascending: RowAdam's step reuses it
    assert expected_norm > 0.5
    twin = [nn.Parameter(torch.zeros_like(g)) for g in dense_copy]
    for t, g in zip(twin, dense_copy, strict=True):
        t.grad = g
    nn.utils.clip_grad_norm_(twin, 0.5)
    for p, t in zip(model.parameters(), twin, strict=True):
        assert torch.allclose(p.grad.to_dense(), t.grad, atol=1e-6)  # type: ignore[union-attr,arg-type]


def test_word_lm_refuses_an_evaluation_too_short_to_score() -> None:
    from l2l.search_spaces import SpaceError

    with pytest.raises(SpaceError, match=r"eval_words must be 0 \(all\) or at least 32, got 20"):
        WordLMSpace(eval_words=20)
    assert WordLMSpace(eval_words=32).eval_words == 32


def test_a_retraining_given_epochs_and_steps_says_both(tmp_path: Path) -> None:
    """`--retrain --epochs 1 --steps 5` trained 5 steps and said "retrained for 1 epoch"."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    db = f"sqlite:///{tmp_path / 'lm.db'}"
    options = ["-S", "max_steps=2", "-S", "eval_words=50"]
    args = ["search", "--space", "word_lm", *options, "-n", "1", "--strategy", "random", "--executor", "local"]
    searched = CliRunner().invoke(app, [*args, "-q", "--storage", db])
    assert searched.exit_code == 0, searched.output
    again = CliRunner().invoke(
        app, ["runs", "best", "1", "--retrain", "--epochs", "1", "--steps", "2", "--storage", db]
    )
    assert again.exit_code == 0 and "retrained for 1 epoch of at most 2 steps: " in again.output, again.output
    assert "params " in again.output  # its costs as computed, as runs best shows them for the child
