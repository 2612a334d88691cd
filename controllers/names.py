"""What naming a strategy needs without loading one (and torch with it): the suffixes of the wrappers a name
can wear, and the error of a wrong name or setting. The CLI's read commands stop here."""

from __future__ import annotations

SCREEN_SUFFIX = "+screen"  # STRATEGY+screen: `l2l.controllers.screen.ScreenedController`
REEVAL_SUFFIX = "+reeval"  # ...+reeval: `l2l.controllers.reeval.ReevaluatedController`


class ControllerError(ValueError):
    """A controller setting, state or call is invalid."""


def split_name(strategy: str) -> tuple[str, bool, bool]:
    """(base strategy, screened, re-evaluated) of a name ``STRATEGY[+screen][+reeval]``, unchecked (the read
    commands and the dashboard name a stored run's strategy without loading it)."""
    rest = strategy.removesuffix(REEVAL_SUFFIX)
    base = rest.removesuffix(SCREEN_SUFFIX)
    return base, rest != base, rest != strategy
