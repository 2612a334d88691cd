"""Regularized (aging) evolution, Real et al. 2019: tournament selection, one-decision mutation, oldest dies."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from l2l.controllers.base import ControllerError, Proposal, UpdateStats
from l2l.controllers.constrained import neighbours, uniform_allowed
from l2l.controllers.unique import DistinctStrategy
from l2l.search_spaces.api import Decision, sequence_length, token_sizes
from l2l.search_spaces.typed import coerce_call


class EvolutionController(DistinctStrategy):
    """Keeps the ``population`` most recent (tokens, reward) pairs.

    Until the population is full, proposals are uniform random. Afterwards each proposal samples
    ``sample`` members, takes the best, and mutates one decision: a categorical decision gets a
    different option, an anchor decision flips one of its bits. Rewards enter the population in
    `update`; the oldest members leave first (aging), whatever their reward. A child of an identity the
    space declares and one proposed before is drawn again (`DistinctStrategy`).
    """

    kind = "evolution"

    def __init__(
        self,
        decisions: Sequence[Decision],
        seed: int,
        population: int = 10,
        sample: int = 3,
        reward_transform: str = "reward",
    ) -> None:
        super().__init__(decisions, seed)
        if population < 2 or not 1 <= sample <= population:
            raise ControllerError(
                f"evolution needs population >= 2 and 1 <= sample <= population; got {population}, {sample}"
            )
        if sequence_length(self.decisions) == 0:
            raise ControllerError("the decisions hold no choice to sample")
        self.population_size, self.sample_size = population, sample
        self.reward_transform = reward_transform
        self.population: deque[tuple[tuple[int, ...], float]] = deque()
        self._sizes = token_sizes(self.decisions)
        self._spans: list[tuple[int, int, Decision]] = []
        pos = 0
        for d in self.decisions:
            if d.width:
                self._spans.append((pos, d.width, d))
            pos += d.width

    @classmethod
    def from_settings(
        cls, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]
    ) -> EvolutionController:
        """Build from user settings: ``population``, ``sample``, ``reward_transform``."""
        unknown = sorted(set(settings) - {"population", "sample", "reward_transform"})
        if unknown:
            raise ControllerError(
                f"unknown evolution setting(s) {unknown}; known: population, reward_transform, sample"
            )
        try:
            settings = coerce_call(cls, settings, "evolution setting")
        except ValueError as exc:
            raise ControllerError(str(exc)) from None
        return cls(decisions, seed, **settings)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def _random(self) -> tuple[int, ...]:
        if self.constraints is not None:
            return uniform_allowed(self.constraints, 1, self.generator)[0]
        return tuple(self._randint(k) for k in self._sizes)

    def _mutate(self, parent: tuple[int, ...]) -> tuple[int, ...]:
        if self.constraints is not None:  # one of the distinct allowed architectures one decision away
            moves = neighbours(parent, self.decisions, self.constraints)
            return moves[self._randint(len(moves))] if moves else self._random()
        child = list(parent)
        pos, width, d = self._spans[self._randint(len(self._spans))]
        if d.kind == "categorical":
            if d.n_choices > 1:
                child[pos] = (child[pos] + 1 + self._randint(d.n_choices - 1)) % d.n_choices
        else:
            bit = pos + self._randint(width)
            child[bit] = 1 - child[bit]
        return tuple(child)

    def _draw(self, n: int) -> list[Proposal]:
        out = []
        for _ in range(n):
            if len(self.population) < self.population_size:
                tokens = self._random()
            else:
                picks = torch.randperm(len(self.population), generator=self.generator)[: self.sample_size].tolist()
                parent = max((self.population[i] for i in picks), key=lambda member: member[1])[0]
                tokens = self._mutate(parent)
            out.append(Proposal(tokens, 0.0, 0.0, self.policy_version))
        return out

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        for p, r in zip(proposals, rewards, strict=True):
            self.population.append((p.tokens, float(r)))
            if len(self.population) > self.population_size:
                self.population.popleft()
        self.policy_version += 1
        best = max(r for _, r in self.population)
        return self._gradient_free_stats(rewards, extra={"population_best": best, **self.distinct.stats()})

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "policy_version": self.policy_version,
            "rng": self.generator.get_state(),
            "population": [[list(t), r] for t, r in self.population],
            "distinct": self.distinct.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy_version = int(state["policy_version"])
        self.generator.set_state(state["rng"])
        self.population = deque((tuple(int(x) for x in t), float(r)) for t, r in state["population"])
        self.distinct.load_state_dict(state.get("distinct"))
