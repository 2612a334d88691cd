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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from controllers.base import ControllerError


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
        t = torch.as_tensor([list(row) for row in tokens], dtype=torch.long)
        if t.ndim != 2 or t.shape[1] != len(self.sizes):
            raise ControllerError(
                f"surrogate expects sequences of {len(self.sizes)} tokens, got shape {tuple(t.shape)}"
            )
        x = torch.zeros(t.shape[0], self.width, dtype=torch.float64)
        x[:, 0] = 1.0
        x.scatter_(1, 1 + self.offsets.unsqueeze(0) + t, 1.0)
        return x

    def fit(self, tokens: Sequence[Sequence[int]], rewards: Sequence[float], generator: torch.Generator) -> None:
        """Fit every member to its own bootstrap resample (drawn with ``generator``) of the history."""
        if len(tokens) != len(rewards) or not tokens:
            raise ControllerError(
                f"surrogate fit needs as many rewards as sequences, got {len(tokens)} and {len(rewards)}"
            )
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
