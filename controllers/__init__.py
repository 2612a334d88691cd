"""Controllers: strategies that propose candidates and learn from rewards (REINFORCE, PPO, evolution, ...).

Importing the package loads no strategy (nor torch): naming, listing and parsing strategies is light, so the
CLI's read commands start fast. A strategy's module loads when a controller is made, or when one of the names
below is first read (`__getattr__`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from l2l.controllers.names import REEVAL_SUFFIX as REEVAL
from l2l.controllers.names import SCREEN_SUFFIX as SUFFIX
from l2l.controllers.names import ControllerError, split_name
from l2l.controllers.plugins import plugin_factory, plugin_names
from l2l.controllers.rewards import costs_needed, get_transform
from l2l.search_spaces.api import Decision
from l2l.search_spaces.constraints import Constraints

if TYPE_CHECKING:  # what `__getattr__` loads on first use, typed for IDEs and mypy
    from l2l.controllers.base import Controller, Ledger, Proposal, UpdateStats
    from l2l.controllers.evolution import EvolutionController
    from l2l.controllers.optuna_sampler import ControllerSampler
    from l2l.controllers.random_search import RandomController
    from l2l.controllers.reeval import REEVAL_SETTINGS, ReevalConfig, ReevaluatedController
    from l2l.controllers.reinforce import PPOController, ReinforceController
    from l2l.controllers.reinforce_config import PRESETS, PPOConfig, ReinforceConfig
    from l2l.controllers.screen import SCREEN_SETTINGS, ScreenConfig, ScreenedController

# name -> the module that defines it, loaded on first use
LAZY = {
    **dict.fromkeys(("Controller", "Ledger", "Proposal", "UpdateStats"), "base"),
    "EvolutionController": "evolution",
    "ControllerSampler": "optuna_sampler",  # and optuna
    "RandomController": "random_search",
    **dict.fromkeys(("REEVAL_SETTINGS", "ReevalConfig", "ReevaluatedController"), "reeval"),
    **dict.fromkeys(("PPOController", "ReinforceController"), "reinforce"),
    **dict.fromkeys(("PRESETS", "PPOConfig", "ReinforceConfig"), "reinforce_config"),
    **dict.fromkeys(("SCREEN_SETTINGS", "ScreenConfig", "ScreenedController"), "screen"),
}

Factory = Callable[[Sequence[Decision], int, Mapping[str, Any]], "Controller"]


def _built_in(name: str) -> Factory:
    """The ``from_settings`` of the class ``name``, its module loaded at the first call."""

    def build(decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]) -> Controller:
        return __getattr__(name).from_settings(decisions, seed, settings)  # type: ignore[no-any-return]

    return build


def _optuna(sampler: str) -> Factory:
    def build(decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]) -> Controller:
        from l2l.controllers.optuna_strategy import OptunaController  # imports optuna only when used

        return OptunaController.for_sampler(sampler)(decisions, seed, settings)

    return build


STRATEGIES: dict[str, Factory] = {
    "reinforce": _built_in("ReinforceController"),
    "ppo": _built_in("PPOController"),
    "random": _built_in("RandomController"),
    "evolution": _built_in("EvolutionController"),
    "tpe": _optuna("tpe"),
    "gp": _optuna("gp"),
    "qmc": _optuna("qmc"),
}


# children per update when a run names no batch: each strategy's published setting (Real et al. and
# NAS-Bench-201 run aging evolution and TPE one child at a time, REINFORCE in batches of 4; PPO keeps
# ENAS-style batches of 10). A screened strategy picks 4 of its screen's pool per update.
DEFAULT_BATCH = {"reinforce": 4, "ppo": 10, "random": 1, "evolution": 1, "tpe": 1, "gp": 1, "qmc": 1}
SCREENED_BATCH = 4


def _factory(base: str) -> tuple[Factory, int] | None:
    """A base strategy's factory and default batch: built in, or from a plugin (`l2l.controllers.plugins`)."""
    if base in STRATEGIES:
        return STRATEGIES[base], DEFAULT_BATCH[base]
    return plugin_factory(base)


def parse_strategy(strategy: str) -> tuple[str, bool, bool]:
    """(base strategy, screened, re-evaluated) of a name ``STRATEGY[+screen][+reeval]``, whose base must exist."""
    base, screened, reevaluated = split_name(strategy)
    if _factory(base) is None:
        known = [*STRATEGIES, *plugin_names(list(STRATEGIES))]
        raise ControllerError(
            f"unknown strategy {strategy!r}; known: {', '.join(known)}, each also as STRATEGY{SUFFIX}, "
            f"STRATEGY{REEVAL} or STRATEGY{SUFFIX}{REEVAL}"
        )
    return base, screened, reevaluated


def default_batch(strategy: str) -> int:
    """How many children ``strategy`` learns from per update unless a run says otherwise."""
    base, screened, _ = parse_strategy(strategy)
    found = _factory(base)
    return SCREENED_BATCH if screened else found[1] if found is not None else 1


# the strategy of `l2l search` when none is named: the best measured (benchmarks/README.md, NAS-Bench-201)
DEFAULT_STRATEGY = "reinforce+screen"


def strategy_names() -> list[str]:
    """Every strategy name `make_controller` accepts: each base strategy, and each wearing the screen,
    re-evaluation or both."""
    names = [*STRATEGIES, *plugin_names(list(STRATEGIES))]
    wrapped = [f"{name}{suffix}" for suffix in (SUFFIX, REEVAL, SUFFIX + REEVAL) for name in names]
    return [*names, *wrapped]


UNKNOWN_KEYS = re.compile(r"unknown [\w -]+ setting\(s\) \[")  # a strategy's message for keys it does not take


def make_controller(
    strategy: str,
    decisions: Sequence[Decision],
    seed: int,
    settings: Mapping[str, Any] | None = None,
    constraints: Constraints | None = None,
    exact: bool = False,
    identity: Callable[[Sequence[int]], Hashable] | None = None,
) -> Controller:
    """The controller named ``strategy`` over ``decisions``, seeded, with user ``settings``, proposing only
    what ``constraints`` allow (a space's `Constraints.of`); ``exact``: the space's rewards are exact
    (`SearchSpace.exact_rewards`), so nothing is worth evaluating twice (no re-evaluation, and no sequence
    proposed twice); ``identity``: the space's identity of token sequences
    (`l2l.search_spaces.constraints.identity_of`), so no identity is proposed twice.

    ``STRATEGY+screen`` wraps the strategy in `ScreenedController`, ``...+reeval`` (outermost) in
    `ReevaluatedController`; the ``screen*`` and ``reeval*`` settings go to those, the rest to the strategy."""
    from l2l.controllers.reeval import REEVAL_SETTINGS, ReevaluatedController
    from l2l.controllers.screen import SCREEN_SETTINGS, ScreenedController, split_settings

    base, screened, reevaluated = parse_strategy(strategy)
    screen, rest = split_settings(settings or {})
    again = {k: v for k, v in rest.items() if k in REEVAL_SETTINGS}
    rest = {k: v for k, v in rest.items() if k not in REEVAL_SETTINGS}
    if screen and not screened:
        wrapped = f"{base}{SUFFIX}{REEVAL if reevaluated else ''}"  # keeping the re-evaluation asked for
        raise ControllerError(f"{', '.join(sorted(screen))}: settings of screening; use the strategy {wrapped}")
    if again and not reevaluated:
        raise ControllerError(
            f"{', '.join(sorted(again))}: settings of re-evaluation; use the strategy {strategy}{REEVAL}"
        )
    try:
        found = _factory(base)
        assert found is not None  # parse_strategy refused unknown names
        controller = found[0](decisions, seed, rest)
    except ControllerError as exc:  # an unknown key: name the wrappers' settings too, they were open to it
        wrappers = [*(SCREEN_SETTINGS if screened else ()), *(REEVAL_SETTINGS if reevaluated else ())]
        if wrappers and UNKNOWN_KEYS.match(str(exc)):
            raise ControllerError(f"{exc}; {strategy} also takes: {', '.join(wrappers)}") from None
        raise
    if screened:
        controller = ScreenedController.from_settings(controller, screen)
    if reevaluated:
        controller = ReevaluatedController.from_settings(controller, again, exact)
    controller.constrain(constraints)
    if identity is None and exact:  # an exact reward is worth having once: no sequence is proposed twice
        identity = _tokens
    controller.identify(identity)
    get_transform(controller.reward_transform)  # an unknown transform fails now, not at the first reward
    return controller


def _tokens(tokens: Sequence[int]) -> Hashable:
    return tuple(int(t) for t in tokens)


def __getattr__(name: str) -> Any:
    if name in LAZY:  # a strategy's module (torch; optuna for ControllerSampler), loaded on first use
        return getattr(importlib.import_module(f"l2l.controllers.{LAZY[name]}"), name)
    raise AttributeError(f"module 'l2l.controllers' has no attribute {name!r}")


__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_STRATEGY",
    "PRESETS",
    "REEVAL_SETTINGS",
    "SCREEN_SETTINGS",
    "STRATEGIES",
    "Controller",
    "ControllerSampler",
    "ControllerError",
    "EvolutionController",
    "Ledger",
    "PPOConfig",
    "PPOController",
    "Proposal",
    "RandomController",
    "ReevalConfig",
    "ReevaluatedController",
    "ScreenConfig",
    "ScreenedController",
    "ReinforceConfig",
    "ReinforceController",
    "UpdateStats",
    "costs_needed",
    "default_batch",
    "make_controller",
    "parse_strategy",
    "strategy_names",
]
