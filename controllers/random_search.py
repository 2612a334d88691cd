"""Random search: uniform samples over the same decisions, with the controller interface."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from l2l.controllers.base import ControllerError, Proposal, UpdateStats
from l2l.controllers.constrained import uniform_allowed
from l2l.controllers.unique import DistinctStrategy
from l2l.search_spaces.api import Decision, sequence_length, token_sizes
from l2l.search_spaces.typed import coerce_call


class RandomController(DistinctStrategy):
    """Every token uniform and independent; `update` learns nothing but reports the batch. Repeats are
    allowed, except of an identity the space declares (`DistinctStrategy`)."""

    kind = "random"

    def __init__(self, decisions: Sequence[Decision], seed: int, reward_transform: str = "reward") -> None:
        super().__init__(decisions, seed)
        if sequence_length(self.decisions) == 0:
            raise ControllerError("the decisions hold no choice to sample")
        self.reward_transform = reward_transform
        self._sizes = token_sizes(self.decisions)
        self._log_prob = -sum(math.log(k) for k in self._sizes)

    @classmethod
    def from_settings(cls, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]) -> RandomController:
        """Build from user settings; only ``reward_transform`` applies to random search."""
        unknown = sorted(set(settings) - {"reward_transform"})
        if unknown:
            raise ControllerError(f"unknown random-search setting(s) {unknown}; known: reward_transform")
        try:
            settings = coerce_call(cls, settings, "random-search setting")
        except ValueError as exc:
            raise ControllerError(str(exc)) from None
        return cls(decisions, seed, **settings)

    def _draw(self, n: int) -> list[Proposal]:
        if self.constraints is not None:  # uniform over the allowed sequences (architectures, for a canonical space)
            size = self.constraints.count()
            return [
                Proposal(t, -math.log(size), math.log(size), self.policy_version)
                for t in uniform_allowed(self.constraints, n, self.generator)
            ]
        cols = [torch.randint(k, (n,), generator=self.generator) for k in self._sizes]
        rows = torch.stack(cols, dim=1).tolist()
        return [Proposal(tuple(row), self._log_prob, -self._log_prob, self.policy_version) for row in rows]

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        self.policy_version += 1
        size = self.constraints.count() if self.constraints is not None else None  # uniform over the allowed ones
        entropy = math.log(size) if size else -self._log_prob
        return self._gradient_free_stats(rewards, entropy=entropy, extra=self.distinct.stats())

    def state_dict(self) -> dict[str, Any]:
        state = {"kind": self.kind, "policy_version": self.policy_version, "rng": self.generator.get_state()}
        return {**state, "distinct": self.distinct.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy_version = int(state["policy_version"])
        self.generator.set_state(state["rng"])
        self.distinct.load_state_dict(state.get("distinct"))
