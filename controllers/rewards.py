"""Reward transforms: how a child's metrics become the scalar the controller maximizes."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

from controllers.base import ControllerError

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


def get_transform(name: str) -> RewardTransform:
    """A named transform (reward, accuracy, cubed = Zoph & Le's accuracy**3, neg_val_loss) or ``module:function``."""
    if name in TRANSFORMS:
        return TRANSFORMS[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ControllerError(f"reward transform {name!r} cannot be imported: {exc}") from exc
        if not callable(fn):
            raise ControllerError(f"reward transform {name!r} is not callable")
        return fn  # type: ignore[no-any-return]
    raise ControllerError(f"unknown reward transform {name!r}; known: {', '.join(TRANSFORMS)}, or module:function")
