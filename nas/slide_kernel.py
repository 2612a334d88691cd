"""SLIDE's sparse kernel and its optimizer: per-example active rows of a weight, computed as sparse products.

`ActiveRows` scores ``scores[b, j] = weight[ids[b, j]] . h[b]`` without gathering the rows: the active sets
are the column pattern of a CSR matrix ``S`` (batch x rows, ``k`` entries a row, free to build because
every example has ``k``), and

- forward is one sampled dense-dense product (`torch.sparse.sampled_addmm`: ``h @ weight^T`` computed at
  ``S``'s entries only, ``batch x k x width`` multiply-adds);
- the input's gradient is ``S @ weight`` (CSR times dense), with the scores' gradient as ``S``'s values;
- the weight's gradient is ``S^T @ h`` over the rows some example touched (the pattern transposed by one
  argsort), returned as a coalesced sparse tensor of those rows only.

On this path nothing of size ``batch x k x width`` is materialized, where a gather (`index_select`) of
the active rows and a batched product moved every active row through memory twice and its backward an
outer product as large again. `active_scores` takes it on CPU in float32/float64 (the CPU sparse kernels'
types) and the gather (a sparse embedding lookup) elsewhere: CUDA's sparse kernels assume no repeated
column in a row, and SLIDE's sets repeat one. `RowAdam` then updates only the touched rows:
`torch.optim.SparseAdam`'s arithmetic step for step, with row gathers and scatters in place of
`sparse_mask`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch.nn import functional as F

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def _pattern(ids: torch.Tensor, n_rows: int, values: torch.Tensor) -> torch.Tensor:
    """The CSR matrix (batch, n_rows) with ``values[b, j]`` at column ``ids[b, j]`` (``ids`` sorted per row)."""
    batch, k = ids.shape
    crow = torch.arange(0, batch * k + 1, k, device=ids.device)
    return torch.sparse_csr_tensor(crow, ids.reshape(-1), values.reshape(-1), (batch, n_rows), check_invariants=False)


def _check_rows(ids: torch.Tensor, n_rows: int) -> None:
    """Refuse row ids outside the weight: the sparse kernels do not check them (a read past the weight)."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n_rows):
        raise IndexError(f"active row ids must be in [0, {n_rows}), got {int(ids.min())} to {int(ids.max())}")


def active_scores(h: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``scores[b, j] = weight[ids[b, j]] . h[b]``, the weight's gradient sparse over the rows ``ids`` holds.
    `ActiveRows` on CPU in float32/float64 (the CPU sparse kernels' types); elsewhere (CUDA, where cuSPARSE
    assumes no repeated column in a row, and SLIDE's sets repeat one; half precision) a sparse embedding
    lookup and a batched product, differentiated by autograd."""
    if h.device.type == "cpu" and h.dtype in (torch.float32, torch.float64):
        return ActiveRows.apply(h, weight, ids)
    return gathered_scores(h, weight, ids)


def gathered_scores(h: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`active_scores` by gathering the rows (``batch x k x width`` of memory): the path off CPU."""
    _check_rows(ids, weight.shape[0])
    rows = F.embedding(ids, weight, sparse=True)
    return torch.bmm(rows, h.unsqueeze(-1)).squeeze(-1)


class ActiveRows(torch.autograd.Function):
    """Scores of each example's active rows of ``weight``: (batch, k) for ``ids`` (batch, k), sorted per example,
    ``k`` at most the weight's rows (a row may repeat; each copy is scored)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, h: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor
    ) -> torch.Tensor:
        if ids.shape[1] > weight.shape[0]:  # sampled_addmm refuses more entries than the dense matrix holds
            raise ValueError(f"{ids.shape[1]} active rows an example, but the weight has {weight.shape[0]} rows")
        _check_rows(ids, weight.shape[0])
        pattern = _pattern(ids, weight.shape[0], h.new_zeros(ids.shape))
        scores = torch.sparse.sampled_addmm(pattern, h, weight.t(), beta=0.0).values().view(ids.shape)
        ctx.save_for_backward(h, weight, ids)
        return scores

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        h, weight, ids = ctx.saved_tensors  # type: ignore[attr-defined]
        n, width = weight.shape
        grad = grad.contiguous()
        grad_h = _pattern(ids, n, grad) @ weight if ctx.needs_input_grad[0] else None  # type: ignore[attr-defined]
        if not ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            return grad_h, None, None
        flat = ids.reshape(-1)
        # example-major -> weight-row-major, the pattern transposed (int32 keys sort twice as fast; rows < 2^31)
        order = flat.to(torch.int32).argsort(stable=True)
        per_row = torch.bincount(flat, minlength=n)
        rows_hit = per_row.nonzero().squeeze(1)
        crow = torch.zeros(len(rows_hit) + 1, dtype=torch.long, device=h.device)
        crow[1:] = per_row[rows_hit].cumsum(0)
        examples = torch.div(order, ids.shape[1], rounding_mode="floor")
        transposed = torch.sparse_csr_tensor(
            crow, examples, grad.reshape(-1)[order], (len(rows_hit), h.shape[0]), check_invariants=False
        )
        grad_w = torch.sparse_coo_tensor(
            rows_hit[None], transposed @ h, (n, width), is_coalesced=True, check_invariants=False
        )
        return grad_h, grad_w, None


def unique_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A row-sparse gradient's rows, each once and ascending, and their values (its duplicates summed).
    `ActiveRows`' gradients already are (autograd drops the coalesced flag on the way to ``.grad``): one
    comparison pass, where `coalesce` would sort again; embeddings' gradients repeat rows and are coalesced."""
    if grad.sparse_dim() != 1:
        raise ValueError(f"RowAdam takes gradients sparse over rows only (sparse_dim 1), got {grad.sparse_dim()}")
    rows = grad._indices()[0]
    if grad.is_coalesced() or bool((rows[1:] > rows[:-1]).all()):
        return rows, grad._values()
    grad = grad.coalesce()
    return grad.indices()[0], grad.values()


class RowAdam(torch.optim.Optimizer):
    """Adam's lazy form for parameters with sparse gradients: the moments and weights of the rows a gradient
    holds are updated, the others left alone. The arithmetic is `torch.optim.SparseAdam`'s (the step counts
    steps taken, as there), fused (`lerp_` for each moment), so the two agree to rounding; rows move by
    gathers and scatters (`index_select`, `index_copy_`, `index_add_`) on dense state."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not (lr > 0 and eps > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"RowAdam needs lr > 0, eps > 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise ValueError("RowAdam takes sparse gradients; use torch.optim.Adam for dense ones")
                rows, values = unique_rows(p.grad)
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1  # counted before an empty gradient is skipped, as SparseAdam counts it
                if values.numel() == 0:
                    continue
                m, v = state["exp_avg"], state["exp_avg_sq"]
                old_m, old_v = m.index_select(0, rows), v.index_select(0, rows)
                numer = old_m.lerp_(values, 1 - beta1)  # old + (1 - b) (new - old), as SparseAdam writes it
                second = old_v.lerp_(values.square(), 1 - beta2)
                m.index_copy_(0, rows, numer)
                v.index_copy_(0, rows, second)
                denom = second.sqrt_().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                p.index_add_(0, rows, numer.div_(denom), alpha=-step_size)
        return loss


def proposal(n_out: int, frequencies: torch.Tensor | None) -> torch.Tensor:
    """Sampling probabilities over ``n_out`` classes (float64): label frequency plus one, or uniform."""
    if frequencies is None:
        return torch.full((n_out,), 1.0 / n_out, dtype=torch.float64)
    if frequencies.shape != (n_out,) or bool((frequencies < 0).any()):
        raise ValueError(f"frequencies must be {n_out} counts >= 0, got shape {tuple(frequencies.shape)}")
    smoothed = frequencies.double() + 1.0  # add-one: every class drawable
    return smoothed / smoothed.sum()


def draw(cdf: torch.Tensor, k: int, device: torch.device) -> torch.Tensor:
    """``k`` classes drawn with replacement from the distribution whose cumulative sums are ``cdf``."""
    picked = torch.searchsorted(cdf, torch.rand(k, dtype=torch.float64, device=device))
    return picked.clamp(max=len(cdf) - 1)
