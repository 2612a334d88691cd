"""A cheap reward model that screens the policy's samples before any of them is trained.

Training a child is the expensive step of a search, and the policy alone spends many children
learning what a simple model of the rewards seen so far already knows (a one-hot linear model of
NAS-Bench-201's 12-epoch accuracy ranks unseen cells well after a few dozen children). So the
controller samples several candidates per child from its policy and proposes the one this model
scores best. The model is an ensemble of ridge regressions on the one-hot tokens, each fitted to a
bootstrap resample of the history; successive proposals are scored by successive members, a form of
Thompson sampling, so a batch does not collapse onto one region the point estimate happens to favour.
A bootstrap resample cannot be optimistic about a value it has not seen (every member gives it weight
0), so with ``prior`` > 0 each member is shrunk towards its own random weights instead of towards 0:
a randomized prior (Osband et al. 2018), which keeps rarely tried values in play.

An additive model cannot learn that a value is good only next to certain others. `HammingGP`, a
Gaussian process whose kernel adds a product over positions, can; it needs more data to beat the
additive model, so the controller switches to it once enough rewards have arrived.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from l2l.controllers.base import ControllerError


def token_table(tokens: Sequence[Sequence[int]], length: int) -> torch.Tensor:
    """[n, length] int64 tensor of token sequences, each checked to hold ``length`` tokens."""
    t = torch.as_tensor([list(row) for row in tokens], dtype=torch.long)
    if t.ndim != 2 or t.shape[1] != length:
        raise ControllerError(f"surrogate expects sequences of {length} tokens, got shape {tuple(t.shape)}")
    return t


def check_history(tokens: Sequence[Sequence[int]], rewards: Sequence[float]) -> None:
    """A surrogate is fitted to a non-empty history with one reward per sequence."""
    if len(tokens) != len(rewards) or not tokens:
        raise ControllerError(f"surrogate fit needs as many rewards as sequences, got {len(tokens)} and {len(rewards)}")


def one_hot(t: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """[n, sum(sizes)] float64 one-hot columns of a [n, len(sizes)] token table, one block per position."""
    offsets = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long)
    x = torch.zeros(t.shape[0], sum(sizes), dtype=torch.float64)
    return x.scatter_(1, offsets.unsqueeze(0) + t, 1.0)


def _agreement(a: torch.Tensor, b: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """[len(a), len(b)] share of positions where two token tables agree: a product of one-hot tables
    counts the agreements exactly, 20 times faster than comparing every pair of positions."""
    return (one_hot(a, sizes) @ one_hot(b, sizes).T) / len(sizes)


class RidgeEnsemble:
    """Bootstrap ensemble of ridge regressions of reward on one-hot token features, each member with
    random prior weights of scale ``prior`` (0: none)."""

    def __init__(self, sizes: Sequence[int], members: int, ridge: float, prior: float = 0.0) -> None:
        if members < 1:
            raise ControllerError(f"a surrogate needs at least 1 member, got {members}")
        if ridge <= 0:
            raise ControllerError(f"the surrogate's ridge penalty must be > 0, got {ridge}")
        if prior < 0:
            raise ControllerError(f"the surrogate's prior scale must be >= 0, got {prior}")
        self.sizes = list(sizes)
        self.offsets = torch.tensor([sum(self.sizes[:i]) for i in range(len(self.sizes))], dtype=torch.long)
        self.width = 1 + sum(self.sizes)  # a bias column, then one column per value of every position
        self.members = members
        self.ridge = ridge
        self.prior = prior
        self.weights: torch.Tensor | None = None  # [members, width]

    def features(self, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """[n, width] float64: a 1, then the one-hot value of every token position."""
        t = token_table(tokens, len(self.sizes))
        x = torch.zeros(t.shape[0], self.width, dtype=torch.float64)
        x[:, 0] = 1.0
        x.scatter_(1, 1 + self.offsets.unsqueeze(0) + t, 1.0)
        return x

    def fit(self, tokens: Sequence[Sequence[int]], rewards: Sequence[float], generator: torch.Generator) -> None:
        """Fit every member to its own bootstrap resample (drawn with ``generator``) of the history."""
        check_history(tokens, rewards)
        x = self.features(tokens)
        y = torch.as_tensor([float(r) for r in rewards], dtype=torch.float64)
        y = (y - y.mean()) / (y.std(unbiased=False) + 1e-12)  # scale-free, so one ridge penalty fits all rewards
        n = len(y)
        penalty = self.ridge * torch.eye(self.width, dtype=torch.float64)
        penalty[0, 0] = 0.0  # the bias is not shrunk
        weights = []
        for _ in range(self.members):
            idx = torch.randint(n, (n,), generator=generator)
            xb, yb = x[idx], y[idx]
            target = xb.T @ yb
            if self.prior > 0:  # shrink towards the member's own random weights instead of towards 0
                anchor = self.prior * torch.randn(self.width, generator=generator, dtype=torch.float64)
                target = target + penalty @ anchor
            weights.append(torch.linalg.solve(xb.T @ xb + penalty, target))
        self.weights = torch.stack(weights)

    def scores(self, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """[members, n]: every member's predicted (standardized) reward of every sequence."""
        if self.weights is None:
            raise ControllerError("the surrogate must be fitted before it scores")
        return self.weights @ self.features(tokens).T


class HammingGP:
    """Gaussian process over token sequences, so that screening can learn how positions act together.

    The kernel of two sequences is built from the share ``a`` of positions where they agree:
    ``mix * a + (1 - mix) * exp(-scale * (1 - a))``. The first part is additive (each position on
    its own, what the ridge model fits); the second is a product over positions, high only for
    sequences that agree almost everywhere, which lets the model learn that a value is good next to
    some values and bad next to others. Rewards are standardized; ``scale`` and the noise level are
    chosen from a small grid by the marginal likelihood at every fit. The ``members`` rows of
    `scores` are joint draws from the posterior over the scored sequences: Thompson sampling, where
    a value the history has rarely tried keeps a wide posterior and so gets tried now and then.
    Past ``max_points`` rewards it conditions on the best and the latest half of them, so that a fit
    stays a fraction of a second however long the search runs.
    """

    SCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
    NOISES = (1e-3, 1e-2, 1e-1)

    def __init__(self, sizes: Sequence[int], members: int, mix: float = 0.2, max_points: int = 1000) -> None:
        if max_points < 2:
            raise ControllerError(f"the surrogate needs max_points >= 2, got {max_points}")
        if members < 1:
            raise ControllerError(f"a surrogate needs at least 1 member, got {members}")
        if not 0.0 <= mix <= 1.0:
            raise ControllerError(f"the surrogate's additive share must be in [0, 1], got {mix}")
        self.sizes = list(sizes)
        self.members = members
        self.mix = mix
        self.max_points = max_points
        self.scale, self.noise = self.SCALES[0], self.NOISES[0]
        self._x: torch.Tensor | None = None
        self._chol = torch.zeros(0, 0, dtype=torch.float64)
        self._alpha = torch.zeros(0, dtype=torch.float64)
        self._draws = torch.Generator()

    def kernel(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[len(a), len(b)] kernel between two [n, length] token tables, at the fitted scale."""
        return self._from_agreement(_agreement(a, b, self.sizes), self.scale)

    def _from_agreement(self, agree: torch.Tensor, scale: float) -> torch.Tensor:
        return self.mix * agree + (1.0 - self.mix) * torch.exp(-scale * (1.0 - agree))

    def fit(
        self,
        tokens: Sequence[Sequence[int]],
        rewards: Sequence[float],
        generator: torch.Generator,
        hyper: tuple[float, float] | None = None,
    ) -> None:
        """Condition on the history, with the scale and noise of the highest marginal likelihood (or those
        of ``hyper``, chosen at an earlier fit: one factorization instead of one per grid point); the
        posterior draws of `scores` come from a generator seeded from ``generator``."""
        check_history(tokens, rewards)
        x = token_table(tokens, len(self.sizes))
        y = torch.as_tensor([float(r) for r in rewards], dtype=torch.float64)
        if len(y) > self.max_points:  # exact GP cost grows as n^3: keep the best half and the latest half
            latest = torch.arange(len(y) - self.max_points // 2, len(y))
            older = torch.argsort(y[: len(y) - len(latest)], descending=True, stable=True)
            keep = torch.cat([older[: self.max_points - len(latest)], latest])
            x, y = x[keep], y[keep]
        y = (y - y.mean()) / (y.std(unbiased=False) + 1e-12)
        eye = torch.eye(len(y), dtype=torch.float64)
        agree = _agreement(x, x, self.sizes)
        best: tuple[float, float, float, torch.Tensor, torch.Tensor] | None = None
        grid = [(hyper[0], (hyper[1],))] if hyper is not None else [(s, self.NOISES) for s in self.SCALES]
        for scale, noises in grid:
            k = self._from_agreement(agree, scale)
            for noise in noises:
                chol, info = torch.linalg.cholesky_ex(k + noise * eye)
                if int(info) != 0:
                    continue
                alpha = torch.cholesky_solve(y.unsqueeze(1), chol).squeeze(1)
                evidence = float(-0.5 * y @ alpha - torch.log(torch.diagonal(chol)).sum())
                if best is None or evidence > best[0]:
                    best = (evidence, scale, noise, chol, alpha)
        if best is None and hyper is not None:  # the earlier choice no longer factorizes: choose again
            return self.fit(tokens, rewards, generator)
        if best is None:  # cannot happen for a kernel of this form (it is positive semi-definite)
            raise ControllerError("the surrogate's kernel matrix is not positive definite at any noise level")
        _, self.scale, self.noise, self._chol, self._alpha = best
        self._x = x
        self._draws = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))

    def posterior(self, tokens: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [n] and covariance [n, n] of the (standardized) reward of the given sequences."""
        if self._x is None:
            raise ControllerError("the surrogate must be fitted before it scores")
        t = token_table(tokens, len(self.sizes))
        cross = self.kernel(self._x, t)  # [history, n]
        v = torch.linalg.solve_triangular(self._chol, cross, upper=False)
        cov = self.kernel(t, t) - v.T @ v
        return cross.T @ self._alpha, 0.5 * (cov + cov.T)

    def scores(self, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """[members, n]: joint draws of the (standardized) reward of every sequence from the posterior."""
        mean, cov = self.posterior(tokens)
        eye = torch.eye(len(mean), dtype=torch.float64)
        root, info = torch.linalg.cholesky_ex(cov + 1e-6 * eye)
        if int(info) != 0:  # near-duplicate sequences can leave the posterior singular beyond the jitter
            values, vectors = torch.linalg.eigh(cov)
            root = vectors * values.clamp(min=0.0).sqrt()
        z = torch.randn(len(mean), self.members, generator=self._draws, dtype=torch.float64)
        return (mean.unsqueeze(1) + root @ z).T
