"""The REINFORCE and PPO controllers' settings: defaults tuned for small budgets, the papers' values as presets,
and how user settings (``-C key=value``) become a config."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from l2l.controllers.names import ControllerError
from l2l.controllers.screen import SCREEN_SETTINGS
from l2l.search_spaces.typed import coerce_fields


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings of the REINFORCE controller; ``PRESETS`` holds the papers' values.

    The defaults are tuned for small budgets (hundreds of children, batches of 4 to 10): a larger
    learning rate than the papers', a mild tanh squashing of the logits so no choice is abandoned
    too early, a fast-moving baseline, sampling without repeats (``unique``), and a
    maximum-likelihood term on the ``elite_size`` best sequences found so far, weighted by
    ``elite_weight`` (priority-queue training, Abolafia et al. 2018), which speeds up learning from
    the few good children a small budget finds.

    Screening by a surrogate is a wrapper any strategy can wear (`l2l.controllers.screen`): the
    default strategy of `l2l search` is ``reinforce+screen``.
    """

    hidden_size: int = 64
    lstm_layers: int = 2
    init_range: float = 0.1
    lr: float = 0.005
    temperature: float | None = None
    tanh_constant: float | None = 2.5
    entropy_weight: float = 0.0
    baseline_decay: float = 0.8
    grad_clip: float | None = 5.0
    reward_transform: str = "reward"
    unique: bool = True
    normalize_advantage: bool = False
    elite_size: int = 3
    elite_weight: float = 1.0
    max_importance: float = 1.0  # truncation of the importance ratio of stale children (async mode)

    def __post_init__(self) -> None:
        given: dict[str, float | None] = {"lr": self.lr, "entropy_weight": self.entropy_weight}
        given |= {"init_range": self.init_range, "elite_weight": self.elite_weight}
        given |= {"temperature": self.temperature, "tanh_constant": self.tanh_constant}
        infinite = [f"{k}={v}" for k, v in given.items() if v is not None and math.isinf(v)]
        if infinite:  # the policy's probabilities become nan: a traceback at the first sample
            raise ControllerError(
                f"{', '.join(infinite)} must be finite (none turns temperature and tanh_constant off)"
            )
        if self.max_importance <= 0:
            raise ControllerError(f"max_importance must be > 0, got {self.max_importance}")
        if self.lr <= 0:
            raise ControllerError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ControllerError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if self.entropy_weight < 0:
            raise ControllerError(f"entropy_weight must be >= 0, got {self.entropy_weight}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ControllerError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.init_range <= 0:
            raise ControllerError(f"init_range must be > 0, got {self.init_range}")
        if self.elite_size < 0 or self.elite_weight < 0:
            raise ControllerError(
                f"elite_size and elite_weight must be >= 0, got {self.elite_size}, {self.elite_weight}"
            )


@dataclass(frozen=True)
class PPOConfig(ReinforceConfig):
    """REINFORCE's settings plus PPO's: the ratio clip and the optimization epochs per batch (NASNet)."""

    clip: float = 0.2
    epochs: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_importance != 1.0:  # REINFORCE's truncation of stale children's ratios: PPO's clip does that
            raise ControllerError(
                f"max_importance={self.max_importance:g} is REINFORCE's (it truncates stale children's importance "
                "ratios); PPO's clipped ratio does that job: set clip instead"
            )
        if not 0.0 < self.clip < 1.0:
            raise ControllerError(f"clip must be in (0, 1), got {self.clip}")
        if self.epochs < 1:
            raise ControllerError(f"epochs must be >= 1, got {self.epochs}")


PRESETS: dict[str, dict[str, Any]] = {
    # Zoph & Le 2017: 2-layer LSTM of 35 units, uniform init in [-0.08, 0.08], Adam 6e-4, EMA baseline.
    "zoph_le": {
        "hidden_size": 35,
        "lstm_layers": 2,
        "init_range": 0.08,
        "lr": 0.0006,
        "temperature": None,
        "tanh_constant": None,
        "entropy_weight": 0.0,
        "baseline_decay": 0.999,
        "grad_clip": None,
        "unique": False,
        "elite_size": 0,
    },
    # ENAS (Pham et al. 2018): 100 units, temperature 5.0, tanh constant 2.5, entropy bonus 1e-4, Adam 3.5e-4.
    "enas": {
        "hidden_size": 100,
        "lstm_layers": 1,
        "init_range": 0.1,
        "lr": 0.00035,
        "temperature": 5.0,
        "tanh_constant": 2.5,
        "entropy_weight": 0.0001,
        "baseline_decay": 0.99,
        "grad_clip": None,
        "unique": False,
        "elite_size": 0,
    },
}


def build_config(settings: Mapping[str, Any], cls: type[ReinforceConfig] = ReinforceConfig) -> ReinforceConfig:
    """A config of type ``cls`` from user settings: an optional ``preset`` name, then any field overrides."""
    settings = dict(settings)
    preset = settings.pop("preset", None)
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ControllerError(f"unknown controller preset {preset!r}; known: {', '.join(PRESETS)}")
        base.update(PRESETS[preset])
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    label = "ppo" if issubclass(cls, PPOConfig) else "reinforce"
    screen = [k for k in unknown if k in SCREEN_SETTINGS]
    if screen:
        raise ControllerError(f"{screen} are settings of screening: use the strategy {label}+screen")
    if unknown:
        raise ControllerError(f"unknown {label} setting(s) {unknown}; known: preset, {', '.join(sorted(known))}")
    try:
        base.update(coerce_fields(cls, settings, f"{label} setting"))
        return cls(**base)
    except ValueError as exc:  # a type's or a range's (said as "lr must be > 0"): name the setting's strategy
        said = str(exc)
        raise ControllerError(said if said.startswith(f"{label} setting") else f"{label} setting {said}") from None
