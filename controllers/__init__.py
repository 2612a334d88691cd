"""Controllers: strategies that propose candidates and learn from rewards (REINFORCE, PPO, evolution, ...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from l2l.controllers.base import Controller, ControllerError, Proposal, UpdateStats
from l2l.controllers.evolution import EvolutionController
from l2l.controllers.random_search import RandomController
from l2l.controllers.reinforce import PRESETS, PPOConfig, PPOController, ReinforceConfig, ReinforceController
from l2l.controllers.rewards import get_transform
from l2l.search_spaces.api import Decision

Factory = Callable[[Sequence[Decision], int, Mapping[str, Any]], Controller]


def _optuna(sampler: str) -> Factory:
    def build(decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]) -> Controller:
        from l2l.controllers.optuna_strategy import OptunaController  # imports optuna only when used

        return OptunaController.for_sampler(sampler)(decisions, seed, settings)

    return build


STRATEGIES: dict[str, Factory] = {
    "reinforce": ReinforceController.from_settings,
    "ppo": PPOController.from_settings,
    "random": RandomController.from_settings,
    "evolution": EvolutionController.from_settings,
    "tpe": _optuna("tpe"),
    "gp": _optuna("gp"),
    "qmc": _optuna("qmc"),
}


def make_controller(
    strategy: str, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any] | None = None
) -> Controller:
    """The controller named ``strategy`` over ``decisions``, seeded, with user ``settings``."""
    if strategy not in STRATEGIES:
        raise ControllerError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    controller = STRATEGIES[strategy](decisions, seed, settings or {})
    get_transform(controller.reward_transform)  # an unknown transform fails now, not at the first reward
    return controller


def __getattr__(name: str) -> Any:
    # ControllerSampler imports optuna; load it only when asked for, so `import controllers` stays light
    if name == "ControllerSampler":
        from l2l.controllers.optuna_sampler import ControllerSampler

        return ControllerSampler
    raise AttributeError(f"module 'l2l.controllers' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "STRATEGIES",
    "Controller",
    "ControllerSampler",
    "ControllerError",
    "EvolutionController",
    "PPOConfig",
    "PPOController",
    "Proposal",
    "RandomController",
    "ReinforceConfig",
    "ReinforceController",
    "UpdateStats",
    "make_controller",
]
