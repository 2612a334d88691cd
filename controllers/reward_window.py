"""The rewards a screen's surrogate is fitted to, bounded so that a fit costs the same at any length of run.

A surrogate fitted to every reward so far costs more with every child (an exact Gaussian process
grows as the cube of its points), and a search of 100,000 children cannot afford that. `RewardWindow`
keeps, incrementally, the subset a fit conditions on: every reward while there are at most ``size``,
then the latest ``size // 2`` and the best of the older ones. The latest follow where the strategy is
now; the best remember the incumbents' region, which the latest may have left. Each reward costs
O(log size) to add, whatever the run's length.
"""

from __future__ import annotations

import heapq
from collections import deque

from l2l.controllers.base import ControllerError

Tokens = tuple[int, ...]


class RewardWindow:
    """The (tokens, reward) pairs a surrogate conditions on, and the ``local`` best distinct sequences."""

    def __init__(self, size: int, local: int = 0) -> None:
        if size < 2:
            raise ControllerError(f"the surrogate needs at least 2 points, got screen_points={size}")
        if local < 0:
            raise ControllerError(f"screen_local must be >= 0, got {local}")
        self.size, self.local = size, local
        self._latest: deque[tuple[int, Tokens, float]] = deque()  # (index, tokens, reward), oldest first
        # the best of the pairs older than the latest: a min-heap on (reward, -index), so its top is the one
        # to drop first (the lowest reward, and of equal rewards the later, as a stable sort ranks them)
        self._older: list[tuple[float, int, Tokens]] = []
        # per sequence its rewards' sum and count and when it was first learned; and a heap of (-mean, first
        # index, tokens, count) entries whose top, past the stale ones, is the best sequence by mean
        self._means: dict[Tokens, tuple[float, int, int]] = {}
        self._best: list[tuple[float, int, Tokens, int]] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, tokens: Tokens, reward: float) -> None:
        """Take the next reward learned from."""
        index, self._count = self._count, self._count + 1
        self._latest.append((index, tokens, reward))
        if len(self._latest) > self.size // 2:
            i, t, r = self._latest.popleft()
            heapq.heappush(self._older, (r, -i, t))
            if len(self._older) > self.size - self.size // 2:
                heapq.heappop(self._older)
        self._note_best(tokens, reward, index)

    def _note_best(self, tokens: Tokens, reward: float, index: int) -> None:
        if self.local < 1:
            return
        total, n, first = self._means.get(tokens, (0.0, 0, index))
        total, n = total + reward, n + 1
        self._means[tokens] = (total, n, first)
        heapq.heappush(self._best, (-(total / n), first, tokens, n))  # older entries of tokens go stale

    def points(self) -> tuple[list[Tokens], list[float]]:
        """The pairs to fit: all of them in order while they fit in ``size``; past it, the best older ones
        (best first, earlier first among equal rewards) and then the latest in order."""
        if self._count <= self.size:
            older = sorted(self._older, key=lambda e: -e[1])  # nothing dropped yet: in the order learned
        else:
            older = sorted(self._older, key=lambda e: (-e[0], -e[1]))
        pairs = [(t, r) for r, _, t in older] + [(t, r) for _, t, r in self._latest]
        return [t for t, _ in pairs], [r for _, r in pairs]

    def best(self) -> list[Tokens]:
        """The ``local`` best distinct sequences by their mean reward, best first (of equal means, the one
        learned first). A sequence evaluated again (a re-evaluation of noisy rewards) is ranked by the mean
        of its evaluations, not by its luckiest one."""
        out: list[Tokens] = []
        kept = []
        while self._best and len(out) < self.local:
            entry = heapq.heappop(self._best)
            if self._means[entry[2]][1] != entry[3]:
                continue  # an entry from before the sequence's latest reward
            out.append(entry[2])
            kept.append(entry)
        for entry in kept:
            heapq.heappush(self._best, entry)
        return out
