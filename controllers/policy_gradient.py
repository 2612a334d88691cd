"""Policy-gradient math in one place: baseline and advantage, elite term, importance weights, PPO's clip.

`ReinforceController`, `PPOController` and the Optuna `ControllerSampler` all train an LSTM policy with
these functions, so a fix or a new setting reaches every policy-gradient learner at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch

from l2l.controllers.base import ControllerError

K = TypeVar("K", bound=tuple[Any, ...])  # a sequence as a tuple: hashable, and ordered to break ties


class EMABaseline:
    """The exponential-moving-average reward baseline of Zoph & Le; the first batch's mean starts it."""

    def __init__(self, decay: float, value: float | None = None) -> None:
        if not 0.0 <= decay < 1.0:
            raise ControllerError(f"baseline_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.value = value

    def advantages(self, rewards: Sequence[float], normalize: bool = False) -> tuple[torch.Tensor, float, float]:
        """(advantage of each reward, the baseline they were measured against, the batch's mean reward).

        With ``normalize`` the advantages are divided by their standard deviation (when there are two or
        more and they differ: equal rewards keep their advantage), for objectives in any unit. The baseline
        then moves towards the batch mean.
        """
        r = torch.tensor([float(x) for x in rewards], dtype=torch.float32)
        if not torch.isfinite(r).all():
            raise ControllerError(f"rewards must be finite, got {list(rewards)}")
        mean_reward = float(r.mean())
        baseline = mean_reward if self.value is None else self.value
        advantage = r - baseline
        if normalize and len(r) > 1 and float(advantage.std()) > 0:
            advantage = advantage / advantage.std()
        self.value = self.decay * baseline + (1.0 - self.decay) * mean_reward
        return advantage, baseline, mean_reward


def update_elite(
    elite: Sequence[tuple[float, K]], batch: Sequence[tuple[float, K]], size: int
) -> list[tuple[float, K]]:
    """The ``size`` best distinct keys of ``elite`` and ``batch`` by reward (a key's best reward counts once,
    ties go to the smaller key), for the maximum-likelihood term of priority-queue training (Abolafia et al.
    2018)."""
    if size == 0:
        return []
    best: dict[K, float] = {}
    for r, key in [*elite, *batch]:
        best[key] = max(float(r), best.get(key, float("-inf")))
    ranked = sorted(((r, k) for k, r in best.items()), key=lambda rk: (-rk[0], rk[1]))
    return ranked[:size]


def elite_loss(log_prob: torch.Tensor, weight: float) -> torch.Tensor:
    """The elite term: the negative mean log-likelihood of the elite sequences, scaled by ``weight``."""
    return -weight * log_prob.mean()


def importance_weights(
    log_prob: torch.Tensor, sampled_log_prob: Sequence[float], stale: Sequence[bool], max_ratio: float
) -> torch.Tensor:
    """pi_now / pi_sampled for sequences sampled from an older policy (asynchronous workers), truncated at
    ``max_ratio`` as in IMPALA's V-trace; 1 for fresh ones. No gradient flows through the weights."""
    stale_mask = torch.tensor(list(stale), dtype=torch.bool)
    if not bool(stale_mask.any()):
        return torch.ones_like(log_prob)
    old = torch.tensor(list(sampled_log_prob), dtype=log_prob.dtype)
    ratio = torch.exp(log_prob.detach() - old).clamp(max=max_ratio)
    return torch.where(stale_mask, ratio, torch.ones_like(ratio))


def reinforce_loss(
    log_prob: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor, entropy_weight: float, weight: torch.Tensor
) -> torch.Tensor:
    """REINFORCE's surrogate loss with per-sequence ``weight`` (importance ratios) and an entropy bonus."""
    return -(weight * advantage * log_prob).mean() - entropy_weight * entropy.mean()


def ppo_loss(
    log_prob: torch.Tensor,
    sampled_log_prob: Sequence[float],
    advantage: torch.Tensor,
    entropy: torch.Tensor,
    entropy_weight: float,
    clip: float,
) -> torch.Tensor:
    """PPO's clipped-ratio loss (Schulman et al. 2017, NASNet's controller) with an entropy bonus."""
    old = torch.tensor(list(sampled_log_prob), dtype=log_prob.dtype)
    ratio = torch.exp(log_prob - old)
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    surrogate = torch.minimum(ratio * advantage, clipped * advantage)
    return -surrogate.mean() - entropy_weight * entropy.mean()
