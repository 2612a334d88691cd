"""Hashed sparse layers (Spring & Shrivastava 2017; SLIDE, Chen et al. 2020).

`HashedLinear` is a wide linear layer that, for each input, computes only the ``k`` neurons that
locality-sensitive hash tables retrieve for it. Neurons are hashed by their weight vectors and the
input by itself, so a neuron lands in the input's bucket when the two point the same way: the
neurons likely to have large activations. Each of the ``tables`` tables is a sorted array of the
neurons' codes; a lookup is a binary search giving the bucket's range. Neurons are ranked by how
many tables retrieved them (ties and shortfalls broken at random, as SLIDE samples when buckets run
short) and the first ``k`` are evaluated. Outputs of the others are zero, and backpropagation only
reaches the evaluated neurons' rows of the weight. Tables are rebuilt from the current weights every
``rebuild_every`` training steps.

Hash families: ``simhash`` (signs of ``bits`` random projections per table) and ``wta``
(winner-take-all: ``bits`` argmaxes over random windows of 4 coordinates per table; comparisons only).

``share="input"`` (the default) is SLIDE's rule: each input its own ``k`` neurons. Gathering k rows
of the weight per input costs more memory traffic than a dense product over a batch reads, so on
one CPU it saves multiplications but not time. ``share="batch"`` lets the inputs of a batch vote and
evaluates the ``k`` neurons with the most votes for all of them: the same multiplications per input,
done as one dense product over the chosen rows.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from l2l.nas.genotypes import SHARING

HASHES = ("simhash", "wta")
WTA_WINDOW = 4


def lsh_codes(v: torch.Tensor, hash: str, planes: torch.Tensor, tables: int, bits: int) -> torch.Tensor:
    """The bucket code of each row of ``v`` in each of ``tables`` tables of ``bits`` bits: (rows, tables).

    ``planes`` are SimHash's random projections (tables * bits, n_in), or WTA's windows (tables * bits, 4).
    """
    if hash == "simhash":
        signs = (v @ planes.t() > 0).long().view(len(v), tables, bits)
        weights = 2 ** torch.arange(bits, device=v.device)
    else:
        picked = v[:, planes]  # (rows, tables * bits, window)
        signs = picked.argmax(-1).view(len(v), tables, bits)
        weights = WTA_WINDOW ** torch.arange(bits, device=v.device)
    return (signs * weights).sum(-1)


def sorted_tables(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each table's neurons sorted by code, ties in random order, and the sorted codes: codes (tables, n)."""
    keys = codes.double() + torch.rand(codes.shape, device=codes.device)  # random order inside a bucket
    order = keys.argsort(dim=1)
    return order, codes.gather(1, order)


def _check_whole(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class HashedLinear(nn.Module):
    """``n_in`` -> ``n_out`` where each input evaluates ``active`` x ``n_out`` neurons chosen by LSH."""

    proj: torch.Tensor
    windows: torch.Tensor
    order: torch.Tensor
    sorted_codes: torch.Tensor

    def __init__(
        self,
        n_in: int,
        n_out: int,
        active: float = 0.05,
        hash: str = "simhash",
        bits: int = 6,
        tables: int = 8,
        rebuild_every: int = 50,
        seed: int = 0,
        share: str = "input",
    ) -> None:
        super().__init__()
        if hash not in HASHES:
            raise ValueError(f"unknown hash {hash!r}; known: {', '.join(HASHES)}")
        if share not in SHARING:
            raise ValueError(f"unknown sharing {share!r}; known: {', '.join(SHARING)}")
        self.share = share
        sizes = (("n_in", n_in), ("n_out", n_out), ("bits", bits), ("tables", tables), ("rebuild_every", rebuild_every))
        for name, size in sizes:
            _check_whole(name, size)
        if not _is_number(active) or not 0 < active <= 1:
            raise ValueError(f"active must be a fraction in (0, 1], got {active!r}")
        if bits > 40:  # a bucket's code is an integer of `bits` bits (SLIDE's output layer takes as many)
            raise ValueError(f"bits must be in 1..40, got {bits}")
        self.n_in, self.n_out, self.hash, self.bits, self.tables = n_in, n_out, hash, bits, tables
        self.k = max(1, round(active * n_out))
        self.rebuild_every = rebuild_every
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.empty(n_out))
        bound = 1 / math.sqrt(n_in)  # nn.Linear's initialization
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)
        gen = torch.Generator().manual_seed(seed)
        if hash == "simhash":
            self.register_buffer("proj", torch.randn(tables * bits, n_in, generator=gen))
        else:
            windows = torch.stack([torch.randperm(n_in, generator=gen)[:WTA_WINDOW] for _ in range(tables * bits)])
            self.register_buffer("windows", windows)
        self.register_buffer("order", torch.zeros(tables, n_out, dtype=torch.long))
        self.register_buffer("sorted_codes", torch.zeros(tables, n_out, dtype=torch.long))
        self.steps = 0
        self.rebuild()

    def codes(self, v: torch.Tensor) -> torch.Tensor:
        """The bucket code of each row of ``v`` in each table: (rows, tables)."""
        planes = self.proj if self.hash == "simhash" else self.windows
        return lsh_codes(v, self.hash, planes, self.tables, self.bits)

    @torch.no_grad()
    def rebuild(self) -> None:
        """Hash every neuron's weight vector into the tables (codes sorted, ties in random order)."""
        order, sorted_codes = sorted_tables(self.codes(self.weight.detach()).t())
        self.order.copy_(order)
        self.sorted_codes.copy_(sorted_codes)
        # the largest bucket bounds how many candidates a lookup can return from one table
        self.max_bucket = max(int(torch.unique(row, return_counts=True)[1].max()) for row in sorted_codes)

    @torch.no_grad()
    def retrieve(self, x: torch.Tensor) -> torch.Tensor:
        """The ``k`` neuron ids each input evaluates: (batch, k)."""
        votes = self._votes(x) + torch.rand(x.shape[0], self.n_out, device=x.device) * 0.5  # ties, random fill
        return votes.topk(self.k, dim=1).indices

    @torch.no_grad()
    def retrieve_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The ``k`` neuron ids with the most votes from the whole batch: (k,)."""
        votes = self._votes(x).sum(0) + torch.rand(self.n_out, device=x.device) * 0.5
        return votes.topk(self.k).indices

    def _votes(self, x: torch.Tensor) -> torch.Tensor:
        """How many tables put each neuron in each input's bucket: (batch, n_out)."""
        q = self.codes(x).t().contiguous()  # (tables, batch)
        lo = torch.searchsorted(self.sorted_codes, q)
        hi = torch.searchsorted(self.sorted_codes, q, right=True)
        cap = min(self.k, self.max_bucket)
        pos = lo[..., None] + torch.arange(cap, device=x.device)  # (tables, batch, cap)
        valid = pos < hi[..., None]
        ids = self.order.gather(1, pos.clamp(max=self.n_out - 1).view(self.tables, -1)).view(pos.shape)
        batch = x.shape[0]
        votes = torch.zeros(batch, self.n_out, device=x.device)
        hits = valid.permute(1, 0, 2).reshape(batch, -1).float()
        return votes.scatter_add_(1, ids.permute(1, 0, 2).reshape(batch, -1), hits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.steps % self.rebuild_every == 0 and self.steps > 0:
                self.rebuild()
            self.steps += 1
        if self.share == "batch":
            chosen = self.retrieve_batch(x)
            values = x @ self.weight[chosen].t() + self.bias[chosen]  # the gradient reaches only these rows
            return x.new_zeros(x.shape[0], self.n_out).index_copy(1, chosen, values)
        ids = self.retrieve(x)
        rows = F.embedding(ids, self.weight)  # (batch, k, n_in); the gradient reaches only these rows
        values = torch.bmm(rows, x.unsqueeze(-1)).squeeze(-1) + self.bias[ids]
        return x.new_zeros(x.shape[0], self.n_out).scatter(1, ids, values)

    def macs_per_input(self) -> int:
        """Multiply-adds for one input: the ``k`` evaluated neurons, plus SimHash's projections."""
        hashing = self.tables * self.bits * self.n_in if self.hash == "simhash" else 0
        return self.k * self.n_in + hashing

    def extra_repr(self) -> str:
        return (
            f"{self.n_in}, {self.n_out}, active={self.k}/{self.n_out}, hash={self.hash}, tables={self.tables}, "
            f"share={self.share}"
        )
