"""Controllers: the strategies that propose candidates and learn from rewards (REINFORCE, random, evolution)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controllers.base import Controller, ControllerError, Proposal, UpdateStats
from controllers.evolution import EvolutionController
from controllers.random_search import RandomController
from controllers.reinforce import PRESETS, ReinforceConfig, ReinforceController
from controllers.rewards import get_transform
from search_spaces.api import Decision

STRATEGIES: dict[str, type[ReinforceController] | type[RandomController] | type[EvolutionController]] = {
    "reinforce": ReinforceController,
    "random": RandomController,
    "evolution": EvolutionController,
}


def make_controller(
    strategy: str, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any] | None = None
) -> Controller:
    """The controller named ``strategy`` over ``decisions``, seeded, with user ``settings``."""
    if strategy not in STRATEGIES:
        raise ControllerError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    controller = STRATEGIES[strategy].from_settings(decisions, seed, settings or {})
    get_transform(controller.reward_transform)  # an unknown transform fails now, not at the first reward
    return controller


__all__ = [
    "PRESETS",
    "STRATEGIES",
    "Controller",
    "ControllerError",
    "EvolutionController",
    "Proposal",
    "RandomController",
    "ReinforceConfig",
    "ReinforceController",
    "UpdateStats",
    "make_controller",
]
