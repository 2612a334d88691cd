"""Repeated evaluations of one architecture: the noise they measure and each architecture's estimated mean.

A trained child's reward is one draw: train the same architecture with another seed and it moves.
`Evaluations` keeps, per architecture (a key: its canonical token sequence), the count, sum and sum of
squares of its rewards, and estimates from them

- the noise: the pooled standard deviation of rewards within architectures (known once some
  architecture has been evaluated twice; zero when repeated evaluations always agree);
- each architecture's posterior mean and standard deviation under a normal model fitted to the run
  itself (empirical Bayes): true means spread around the mean of all architectures with the variance
  the evaluated means show beyond the noise (at least the noise's own, and only once `SHRINK_FROM`
  architectures show it), and each evaluation adds the measured noise. An architecture seen once with
  a lucky reward is pulled towards the crowd more than one seen five times.

The arrays grow by doubling, so an estimate over a long run costs a few vector operations, not a loop.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SHRINK_FROM = 10  # architectures needed to estimate how their true means spread (fewer: no shrinkage)
Z95 = 1.959964  # the two-sided 95% quantile of the normal distribution
FEW = 24  # `Evaluations.add_many` adds fewer rewards than this one at a time


@dataclass(frozen=True)
class ArchEstimate:
    """What the evaluations of one architecture say: ``n`` rewards with this ``mean``; the posterior mean and
    sd of its true reward (``sd`` None while the noise is unknown, 0 for exact rewards)."""

    key: Hashable
    n: int
    mean: float
    estimate: float
    sd: float | None

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """The ``z`` interval of the true reward (95% by default), or None while the noise is unknown."""
        return None if self.sd is None else (self.estimate - z * self.sd, self.estimate + z * self.sd)


class Evaluations:
    """The rewards of every architecture evaluated so far, grouped by key."""

    def __init__(self) -> None:
        self._index: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._n = np.zeros(16)
        self._sum = np.zeros(16)
        self._sumsq = np.zeros(16)  # sum of squared deviations from the running mean (Welford), per key
        self._mean = np.zeros(16)
        self.total = 0

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Hashable, reward: float) -> None:
        """One more evaluation of ``key``."""
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self._keys)
            self._keys.append(key)
            self._grow(i + 1)
        n = self._n[i] + 1
        delta = reward - self._mean[i]
        self._mean[i] += delta / n
        self._sumsq[i] += delta * (reward - self._mean[i])
        self._n[i], self._sum[i] = n, self._sum[i] + reward
        self.total += 1

    def add_many(self, keys: Sequence[Hashable], rewards: Sequence[float]) -> None:
        """``add`` for each (key, reward) in turn, in one pass of array operations over the keys the batch holds:
        the batch's own count, mean and squared deviations per key, merged into what was there (Chan et al.'s
        update; the same figures as one add at a time, to rounding). What a page of 100,000 children costs 0.4 s
        of, one at a time; a batch costs what its keys do, however many keys came before it."""
        if len(keys) < FEW:  # a few: each alone costs less than the arrays' fixed overhead
            for key, reward in zip(keys, rewards, strict=True):
                self.add(key, float(reward))
            return
        index, known = self._index, self._keys
        ids = np.empty(len(keys), dtype=np.int64)
        for j, key in enumerate(keys):
            i = index.get(key)
            if i is None:  # met for the first time: it takes the next place, in the order keys were met
                i = index[key] = len(known)
                known.append(key)
            ids[j] = i
        self._grow(len(known))
        held, which = np.unique(ids, return_inverse=True)
        x = np.asarray(rewards, dtype=float)
        n_b = np.bincount(which).astype(float)
        sum_b = np.bincount(which, weights=x)
        mean_b = sum_b / n_b
        m2_b = np.bincount(which, weights=(x - mean_b[which]) ** 2)
        n_a, mean_a = self._n[held], self._mean[held]
        n = n_a + n_b
        delta = mean_b - mean_a
        self._sumsq[held] += m2_b + delta**2 * n_a * n_b / n
        self._mean[held] = mean_a + delta * n_b / n
        self._sum[held] += sum_b
        self._n[held] = n
        self.total += len(keys)

    def _grow(self, size: int) -> None:
        """Room for ``size`` keys in the arrays (doubling them)."""
        while len(self._n) < size:
            for name in ("_n", "_sum", "_sumsq", "_mean"):
                old = getattr(self, name)
                setattr(self, name, np.concatenate([old, np.zeros(len(old))]))

    def count(self, key: Hashable) -> int:
        """How many times ``key`` was evaluated (0 if never)."""
        i = self._index.get(key)
        return 0 if i is None else int(self._n[i])

    def mean(self, key: Hashable) -> float:
        """The mean reward of ``key`` so far (it must have been evaluated)."""
        return float(self._mean[self._index[key]])

    @property
    def noise_df(self) -> int:
        """Degrees of freedom of the noise estimate: evaluations beyond the first of each architecture."""
        return self.total - len(self._keys)

    def noise_sd(self) -> float | None:
        """The pooled within-architecture standard deviation of rewards, None until some key has two."""
        df = self.noise_df
        if df < 1:
            return None
        return math.sqrt(max(float(self._sumsq[: len(self._keys)].sum()), 0.0) / df)

    def estimates(self, noise_sd: float | None = None, limit: int | None = None) -> list[ArchEstimate]:
        """The ``limit`` best architectures' estimates (all by default), best first (ties: the first evaluated
        first). ``noise_sd`` overrides the measured noise (0 for a space whose rewards are exact)."""
        k = len(self._keys)
        if k == 0:
            return []
        n, mean = self._n[:k], self._mean[:k]
        sigma = self.noise_sd() if noise_sd is None else noise_sd
        if sigma is None or sigma <= 0.0 or k < SHRINK_FROM:
            post, sd = mean, (None if sigma is None else np.full(k, 0.0 if sigma <= 0 else sigma) / np.sqrt(n))
        else:
            noise_var = sigma**2
            mu0 = float(mean.mean())
            spread = float(((mean - mu0) ** 2).sum() / (k - 1)) - float((noise_var / n).mean())
            # the true means' spread, at least the noise's: one evaluation is pulled at most halfway to the crowd
            tau2 = max(spread, noise_var)
            precision = 1.0 / tau2 + n / noise_var
            post = (mu0 / tau2 + n * mean / noise_var) / precision
            sd = 1.0 / np.sqrt(precision)
        if limit == 1:  # the best (np.argmax takes the first of ties)
            order = [int(np.argmax(post))]
        elif limit is not None and limit <= 8:  # the few best in O(k) each
            masked, order = post.astype(float), []
            for _ in range(min(limit, k)):
                i = int(np.argmax(masked))
                order.append(i)
                masked[i] = -np.inf
        else:
            order = np.lexsort((np.arange(k), -post))[: k if limit is None else limit].tolist()
        return [
            ArchEstimate(self._keys[i], int(n[i]), float(mean[i]), float(post[i]), None if sd is None else float(sd[i]))
            for i in order
        ]

    def state(self) -> dict[str, Any]:
        """The keys (in first-evaluated order) and their counts, means and squared deviations, for a checkpoint."""
        k = len(self._keys)
        return {
            "keys": list(self._keys),
            "n": self._n[:k].tolist(),
            "sum": self._sum[:k].tolist(),
            "mean": self._mean[:k].tolist(),
            "sumsq": self._sumsq[:k].tolist(),
        }

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> Evaluations:
        """The evaluations a `state` describes, exactly (the same sums, not re-added rewards)."""
        out = Evaluations()
        keys = list(state["keys"])
        size = max(16, 1 << max(len(keys) - 1, 0).bit_length())
        out._keys, out._index = keys, {key: i for i, key in enumerate(keys)}
        for name in ("n", "sum", "mean", "sumsq"):
            column = np.zeros(size)
            column[: len(keys)] = np.asarray(state[name], dtype=float)
            setattr(out, f"_{name}", column)
        out.total = int(out._n.sum())
        return out

    @staticmethod
    def of(pairs: Iterable[tuple[Hashable, float]]) -> Evaluations:
        """The evaluations of ``(key, reward)`` pairs."""
        out, pairs = Evaluations(), list(pairs)
        out.add_many([k for k, _ in pairs], [float(r) for _, r in pairs])
        return out


def chance_better(a: ArchEstimate, b: ArchEstimate) -> float | None:
    """The posterior probability that ``a``'s true reward exceeds ``b``'s (normal approximation), or None while
    the noise is unknown."""
    if a.sd is None or b.sd is None:
        return None
    spread = math.hypot(a.sd, b.sd)
    if spread == 0.0:
        return 1.0 if a.estimate > b.estimate else 0.0 if a.estimate < b.estimate else 0.5
    return 0.5 * (1.0 + math.erf((a.estimate - b.estimate) / (spread * math.sqrt(2.0))))
