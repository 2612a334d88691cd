"""Sampling within a space's `Constraints`: uniform draws over the allowed sequences, masks for policies
that sample position by position, and the one-step neighbourhood evolution and screening move in.

Every draw here goes position by position among the values that still lead to an allowed sequence,
weighted by how many allowed sequences each one leads to, so nothing is drawn and thrown away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from l2l.search_spaces.api import Decision
from l2l.search_spaces.constraints import Constraints


def uniform_allowed(constraints: Constraints, n: int, generator: torch.Generator) -> list[tuple[int, ...]]:
    """``n`` sequences drawn uniformly (with replacement) from those ``constraints`` allow."""
    draws = torch.rand(n, len(constraints.sizes), generator=generator, dtype=torch.float64).tolist()
    out = []
    for row in draws:
        prefix: list[int] = []
        for u in row:
            prefix.append(_weighted(constraints.branch_counts(prefix), u))
        out.append(tuple(prefix))
    return out


def fair_allowed(constraints: Constraints, generator: torch.Generator) -> list[tuple[int, ...]]:
    """A group of sequences in which every value of every position appears equally often (FairNAS's strict
    fairness, Chu et al. 2021): as many sequences as the widest position has values; each position takes its
    values in a random order, repeated in new random orders to fill the group where it has fewer. Where the
    constraints forbid the fair value after a sequence's prefix, that position draws among the allowed values
    as `uniform_allowed` does, so every sequence is allowed and fairness holds as far as the constraints let it."""
    width = max(constraints.sizes)
    columns = []
    for size in constraints.sizes:
        values: list[int] = []
        while len(values) < width:
            values += torch.randperm(size, generator=generator).tolist()
        columns.append(values[:width])
    draws = torch.rand(width, len(constraints.sizes), generator=generator, dtype=torch.float64).tolist()
    out = []
    for row, fair in zip(draws, zip(*columns, strict=True), strict=True):
        prefix: list[int] = []
        for u, value in zip(row, fair, strict=True):
            counts = constraints.branch_counts(prefix)
            prefix.append(value if counts[value] else _weighted(counts, u))
        out.append(tuple(prefix))
    return out


def _weighted(counts: Sequence[int], u: float) -> int:
    """The value whose share of ``counts`` holds the point ``u`` in [0, 1)."""
    target, total = u * sum(counts), 0
    for value, c in enumerate(counts):
        total += c
        if c and target < total:
            return value
    return max(v for v, c in enumerate(counts) if c)  # where rounding runs past the last one


def allowed_mask(constraints: Constraints) -> Callable[[torch.Tensor], torch.Tensor]:
    """For a policy's prefixes [n, depth], a bool mask [n, values] of the values that lead to an allowed sequence."""

    def mask(prefixes: torch.Tensor) -> torch.Tensor:
        rows = [[c > 0 for c in constraints.branch_counts(p)] for p in prefixes.tolist()]
        return torch.tensor(rows, dtype=torch.bool).reshape(prefixes.shape[0], -1)

    return mask


def both(
    first: Callable[[torch.Tensor], torch.Tensor] | None, second: Callable[[torch.Tensor], torch.Tensor] | None
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The mask allowing what both masks allow (either may be absent)."""
    if first is None or second is None:
        return first or second
    return lambda prefixes: first(prefixes) & second(prefixes)


def neighbours(
    tokens: Sequence[int], decisions: Sequence[Decision], constraints: Constraints | None
) -> list[tuple[int, ...]]:
    """The distinct allowed sequences one decision away from ``tokens``: another option of a categorical
    decision or one flipped anchor bit, each as the canonical sequence of its architecture; moves into a
    forbidden combination are left out."""
    base = tuple(int(t) for t in tokens)
    found: dict[tuple[int, ...], None] = {}
    pos = 0
    for d in decisions:
        if d.kind == "categorical":
            moves = [(pos, v) for v in range(d.n_choices) if v != base[pos]]
        else:
            moves = [(pos + j, 1 - base[pos + j]) for j in range(d.width)]
        for where, value in moves:
            child = (*base[:where], value, *base[where + 1 :])
            if constraints is not None:
                child = constraints.canonical(child)
                if not constraints.valid(child):
                    continue
            found[child] = None
        pos += d.width
    same = constraints.canonical(base) if constraints is not None else base
    return [t for t in found if t != same]
