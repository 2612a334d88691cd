"""SLIDE's kernel against the plain computation it replaces, and RowAdam against torch.optim.SparseAdam."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from l2l.nas.slide_kernel import ActiveRows, RowAdam, gathered_scores


def _ids(batch: int, k: int, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (batch, k), generator=gen).sort(dim=1).values  # sorted per example, with repeats


def test_active_rows_equal_the_gathered_product_in_values_and_gradients() -> None:
    torch.manual_seed(0)
    n, d, batch, k = 50, 7, 6, 12
    ids = _ids(batch, k, n, seed=1)
    assert bool((ids[:, 1:] == ids[:, :-1]).any())  # repeats are part of the case
    h = torch.randn(batch, d, requires_grad=True)
    w = torch.randn(n, d, requires_grad=True)
    h2, w2 = h.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    upstream = torch.randn(batch, k)
    scores = ActiveRows.apply(h, w, ids)
    reference = (w2[ids] * h2[:, None, :]).sum(-1)  # autograd through a plain gather
    torch.testing.assert_close(scores, reference)
    (scores * upstream).sum().backward()
    (reference * upstream).sum().backward()
    torch.testing.assert_close(h.grad, h2.grad)
    assert w.grad is not None and w.grad.is_sparse
    torch.testing.assert_close(w.grad.to_dense(), w2.grad)
    # the gradient holds exactly the rows some example touched, each once, not the layer
    assert w.grad._indices()[0].tolist() == sorted(set(ids.reshape(-1).tolist()))
    assert w.grad._indices().shape[1] < n


def test_active_rows_refuse_more_rows_an_example_than_the_weight_has_and_ids_outside_it() -> None:
    with pytest.raises(ValueError, match="5 active rows an example, but the weight has 4 rows"):
        ActiveRows.apply(torch.randn(2, 3), torch.randn(4, 3), torch.zeros(2, 5, dtype=torch.long))
    for bad, shown in ((4, "0 to 4"), (-1, "-1 to 1")):  # a read past the weight, not a wrong number
        ids = torch.tensor([[0, bad], [0, 1]])
        for scores in (ActiveRows.apply, gathered_scores):
            with pytest.raises(IndexError, match=f"must be in \\[0, 4\\), got {shown}"):
                scores(torch.randn(2, 3), torch.randn(4, 3), ids)


def test_the_gathered_path_off_cpu_computes_the_same_scores_and_sparse_gradients() -> None:
    torch.manual_seed(3)
    ids = _ids(5, 9, 30, seed=4)
    h, w = torch.randn(5, 6), torch.randn(30, 6)
    grads = []
    for scores in (ActiveRows.apply, gathered_scores):
        hh, ww = h.clone().requires_grad_(True), w.clone().requires_grad_(True)
        out = scores(hh, ww, ids)
        (out.square().sum()).backward()
        assert ww.grad is not None and ww.grad.is_sparse
        grads.append((out.detach(), hh.grad, ww.grad.to_dense()))
    for mine, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_row_adam_follows_sparse_adam_step_for_step_and_leaves_untouched_rows() -> None:
    torch.manual_seed(2)
    table = torch.randn(30, 5)
    mine = table.clone().requires_grad_(True)
    ref = table.clone().requires_grad_(True)
    ours, theirs = RowAdam([mine], lr=0.05), torch.optim.SparseAdam([ref], lr=0.05)
    never = torch.arange(25, 30)  # no step draws these rows
    for step in range(6):
        rows = torch.randint(0, 25, (8,), generator=torch.Generator().manual_seed(step))  # repeats: uncoalesced
        target = torch.randn(8, 5)
        for weight, opt in ((mine, ours), (ref, theirs)):
            opt.zero_grad()
            F.mse_loss(F.embedding(rows, weight, sparse=True), target).backward()
            opt.step()
        torch.testing.assert_close(mine.detach(), ref.detach(), rtol=1e-6, atol=1e-6)
    assert not torch.equal(mine.detach()[:25], table[:25])
    torch.testing.assert_close(mine.detach()[never], table[never], rtol=0, atol=0)
    state = ours.state[mine]
    assert state["step"] == 6 and bool((state["exp_avg"][never] == 0).all())


def test_row_adam_refuses_a_dense_gradient_and_one_sparse_in_two_dims() -> None:
    w = torch.zeros(3, 2, requires_grad=True)
    w.grad = torch.ones(3, 2)
    with pytest.raises(ValueError, match="RowAdam takes sparse gradients"):
        RowAdam([w]).step()
    w.grad = torch.ones(3, 2).to_sparse()  # sparse over elements, not rows
    with pytest.raises(ValueError, match="sparse over rows only \\(sparse_dim 1\\), got 2"):
        RowAdam([w]).step()


def test_row_adam_counts_an_empty_step_and_returns_the_closures_loss_as_sparse_adam_does() -> None:
    weights = [torch.zeros(5, 2, requires_grad=True) for _ in range(2)]
    opts = [
        RowAdam([weights[0]], lr=0.1, betas=(0.5, 0.7)),
        torch.optim.SparseAdam([weights[1]], lr=0.1, betas=(0.5, 0.7)),
    ]
    empty = torch.sparse_coo_tensor(
        torch.zeros(1, 0, dtype=torch.long), torch.zeros(0, 2), (5, 2), check_invariants=True
    )
    full = torch.sparse_coo_tensor(
        torch.tensor([[0, 3]]), torch.tensor([[1.0, -2.0], [0.5, 0.25]]), (5, 2), check_invariants=True
    )
    for grad in (empty, full, full):
        for w, opt in zip(weights, opts, strict=True):
            w.grad = grad.clone()
            assert opt.step(lambda: 1.5) == 1.5
    torch.testing.assert_close(weights[0].detach(), weights[1].detach())
    mine, theirs = opts[0].state[weights[0]], opts[1].state[weights[1]]
    assert mine["step"] == int(theirs["step"]) == 3
    torch.testing.assert_close(mine["exp_avg"], theirs["exp_avg"])
    torch.testing.assert_close(mine["exp_avg_sq"], theirs["exp_avg_sq"])


@pytest.mark.parametrize("rows", [[1, 4, 7], [7, 1, 4]])  # ascending (taken as is) and not (coalesced first)
def test_row_adam_reads_unique_rows_in_any_order_like_sparse_adam(rows: list[int]) -> None:
    values = torch.randn(3, 2)
    weights = [torch.zeros(9, 2, requires_grad=True) for _ in range(2)]
    for w in weights:
        w.grad = torch.sparse_coo_tensor(torch.tensor([rows]), values, (9, 2), check_invariants=True)  # uncoalesced
    RowAdam([weights[0]], lr=0.1).step()
    torch.optim.SparseAdam([weights[1]], lr=0.1).step()
    torch.testing.assert_close(weights[0].detach(), weights[1].detach())
    assert bool((weights[0].detach()[rows] != 0).all()) and int((weights[0].detach() != 0).sum()) == 6
