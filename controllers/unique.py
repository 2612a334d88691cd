"""A prefix tree of the token sequences already proposed, for sampling without repeats.

The policy samples position by position; at each position the tree says which values still lead
to an unproposed sequence, and the policy samples among those only. Sampling therefore costs one
pass of the policy however concentrated it has become, instead of resampling until something new
turns up. Each position has a fixed number of values (a categorical decision's choices, or 2 for
one bit of an anchor decision), so a subtree is exhausted when it holds as many sequences as the
product of the sizes below it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from l2l.controllers.base import ControllerError
from l2l.search_spaces.constraints import Constraints


class _Node:
    __slots__ = ("children", "count")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.count = 0


class SeenTree:
    """Counts, for every prefix, how many distinct proposed sequences start with it."""

    def __init__(
        self, sizes: Sequence[int], sequences: Iterable[Sequence[int]] = (), constraints: Constraints | None = None
    ) -> None:
        if not sizes or any(s < 1 for s in sizes):
            raise ControllerError(f"position sizes must be >= 1, got {list(sizes)}")
        self.sizes = list(sizes)
        # capacity[i]: the number of distinct sequences below a node at depth i; with constraints, the
        # allowed ones, which differ prefix by prefix (`Constraints.branch_counts`)
        self.capacity = [math.prod(self.sizes[i:]) for i in range(len(self.sizes) + 1)]
        self.constraints = constraints
        self.total = constraints.count() if constraints is not None else self.capacity[0]
        self.root = _Node()
        for seq in sequences:
            self.add(seq)

    def __len__(self) -> int:
        return self.root.count

    def __contains__(self, seq: Sequence[int]) -> bool:
        node: _Node | None = self.root
        for t in seq:
            node = node.children.get(int(t)) if node is not None else None
        return node is not None and len(seq) == len(self.sizes)

    @property
    def exhausted(self) -> bool:
        return self.root.count >= self.total

    def add(self, seq: Sequence[int]) -> bool:
        """Record ``seq``; returns False when it was already there."""
        if len(seq) != len(self.sizes):
            raise ControllerError(f"sequence has {len(seq)} tokens, expected {len(self.sizes)}")
        if tuple(seq) in self:
            return False
        node = self.root
        node.count += 1
        for t in seq:
            node = node.children.setdefault(int(t), _Node())
            node.count += 1
        return True

    def allowed(self, prefixes: torch.Tensor) -> torch.Tensor:
        """For prefixes [n, depth], a bool mask [n, sizes[depth]] of the values not yet exhausted."""
        n, depth = prefixes.shape
        size = self.sizes[depth]
        mask = torch.ones(n, size, dtype=torch.bool)
        for row, prefix in enumerate(prefixes.tolist()):
            full = [self.capacity[depth + 1]] * size
            if self.constraints is not None:
                full = self.constraints.branch_counts(prefix)
                mask[row] = torch.tensor([c > 0 for c in full])
            node: _Node | None = self.root
            for t in prefix:
                node = node.children.get(t) if node is not None else None
                if node is None:
                    break
            if node is None:
                continue
            for value, child in node.children.items():
                if child.count >= full[value]:
                    mask[row, value] = False
        return mask
