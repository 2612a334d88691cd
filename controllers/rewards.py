"""Reward transforms: how a child's metrics become the scalar the controller maximizes."""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping

from l2l.controllers.names import ControllerError

Metrics = Mapping[str, float | None]
RewardTransform = Callable[[Metrics], float]


def _accuracy(m: Metrics) -> float:
    value = m.get("val_acc")
    return float(value if value is not None else m["reward"] or 0.0)


def _neg_val_loss(m: Metrics) -> float:
    value = m.get("val_loss")
    if value is None:
        raise ControllerError("reward transform 'neg_val_loss' needs a validation loss, the child reported none")
    return -float(value)


TRANSFORMS: dict[str, RewardTransform] = {
    "reward": lambda m: float(m["reward"] or 0.0),
    "accuracy": _accuracy,
    "cubed": lambda m: _accuracy(m) ** 3,
    "neg_val_loss": _neg_val_loss,
}


_MNAS = re.compile(r"^mnas\(\s*(\w+)\s*,\s*([^,()]+)\s*,\s*([^,()]+)\s*\)$")


def mnas_transform(metric: str, target: float, weight: float) -> RewardTransform:
    """MnasNet's cost-aware reward ``accuracy * (cost / target) ** weight`` (weight < 0: cheaper is better).
    Where a child reports no accuracy, its reward stands for it; a reward below zero (a negated loss or bits per
    character) is divided by the factor instead, so that there too the cheaper of two equal rewards is better
    and the better of two equal costs (multiplying made a cheaper child's negative reward worse)."""
    if not 0 < target < math.inf:
        raise ControllerError(f"mnas reward needs a finite target > 0, got {target}")
    if not -math.inf < weight <= 0:
        raise ControllerError(f"mnas reward needs a finite weight <= 0 (MnasNet uses -0.07), got {weight}")

    def transform(m: Metrics) -> float:
        cost = m.get(f"cost_{metric}")
        if cost is None:
            known = sorted(k.removeprefix("cost_") for k, v in m.items() if k.startswith("cost_") and v is not None)
            reported = (
                f"the child reported {', '.join(known)}" if known else "its space reports no cost for its children"
            )
            raise ControllerError(f"mnas reward needs the cost {metric!r}; {reported}")
        value, factor = _accuracy(m), (max(float(cost), 1e-12) / target) ** weight
        return value * factor if value >= 0 else value / factor

    return transform


def costs_needed(name: str) -> tuple[str, ...]:
    """The costs a named transform reads from a child's result (``mnas(flops,...)`` reads ``flops``)."""
    match = _MNAS.match(name)
    return (match.group(1),) if match else ()


def get_transform(name: str) -> RewardTransform:
    """A named transform (reward, accuracy, cubed = Zoph & Le's accuracy**3, neg_val_loss), MnasNet's
    ``mnas(COST,TARGET,W)`` (e.g. ``mnas(flops,2e5,-0.07)``), or ``module:function``."""
    if name in TRANSFORMS:
        return TRANSFORMS[name]
    match = _MNAS.match(name)
    if match:
        try:
            target, weight = float(match.group(2)), float(match.group(3))
        except ValueError:
            raise ControllerError(f"reward transform {name!r}: target and weight must be numbers") from None
        return mnas_transform(match.group(1), target, weight)
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == module_name.partition(".")[0]
            hint = " (a module in this folder needs PYTHONPATH=.)" if missing else ""
            raise ControllerError(f"reward transform {name!r} cannot be imported: {exc}{hint}") from exc
        if not callable(fn):
            raise ControllerError(f"reward transform {name!r} is not callable")
        return fn  # type: ignore[no-any-return]
    if name.replace(" ", "").startswith("mnas("):  # a MnasNet reward written wrong: say what it takes
        raise ControllerError(f"reward transform {name!r}: mnas takes three arguments, mnas(COST,TARGET,W)")
    raise ControllerError(
        f"unknown reward transform {name!r}; known: {', '.join(TRANSFORMS)}, mnas(COST,TARGET,W), or module:function"
    )
