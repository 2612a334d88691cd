"""REINFORCE on the LSTM policy (Zoph & Le), with the settings of the papers as presets."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from controllers.base import Controller, ControllerError, Proposal, UpdateStats
from controllers.policy import LSTMPolicy
from search_spaces.api import Decision


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings of the REINFORCE controller; ``PRESETS`` holds the papers' values.

    The defaults are tuned for small budgets (hundreds of children, a batch of about 10):
    a larger learning rate than the papers', a mild tanh squashing of the logits so no choice is
    abandoned too early, and a fast-moving baseline.
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

    def __post_init__(self) -> None:
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
    },
}


def build_config(settings: Mapping[str, Any]) -> ReinforceConfig:
    """A config from user settings: an optional ``preset`` name, then any field overrides."""
    settings = dict(settings)
    preset = settings.pop("preset", None)
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ControllerError(f"unknown controller preset {preset!r}; known: {', '.join(PRESETS)}")
        base.update(PRESETS[preset])
    known = {f.name for f in dataclasses.fields(ReinforceConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ControllerError(f"unknown reinforce setting(s) {unknown}; known: preset, {', '.join(sorted(known))}")
    base.update(settings)
    return ReinforceConfig(**base)


class ReinforceController(Controller):
    """Policy gradient with an exponential-moving-average baseline and an optional entropy bonus."""

    kind = "reinforce"

    def __init__(self, decisions: Sequence[Decision], seed: int, config: ReinforceConfig | None = None) -> None:
        super().__init__(decisions, seed)
        self.config = config or ReinforceConfig()
        self.reward_transform = self.config.reward_transform
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # parameter init is part of the run's seeded state
            self.policy = LSTMPolicy(
                self.decisions, c.hidden_size, c.lstm_layers, c.init_range, c.temperature, c.tanh_constant
            )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.lr)
        self.baseline: float | None = None

    @classmethod
    def from_settings(
        cls, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]
    ) -> ReinforceController:
        """Build from user settings (see `build_config`)."""
        return cls(decisions, seed, build_config(settings))

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        with torch.no_grad():
            tokens, log_prob, entropy = self.policy(n, generator=self.generator)
        return [
            Proposal(tuple(int(t) for t in row), float(lp), float(ent), self.policy_version)
            for row, lp, ent in zip(tokens.tolist(), log_prob, entropy, strict=True)
        ]

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        r = torch.tensor([float(x) for x in rewards], dtype=torch.float32)
        if not torch.isfinite(r).all():
            raise ControllerError(f"rewards must be finite, got {list(rewards)}")
        mean_reward = float(r.mean())
        baseline = mean_reward if self.baseline is None else self.baseline
        forced = torch.tensor([p.tokens for p in proposals], dtype=torch.long)
        _, log_prob, entropy = self.policy(len(proposals), forced=forced)
        advantage = r - baseline
        loss = -(advantage * log_prob).mean() - self.config.entropy_weight * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = math.nan
        if self.config.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip))
        self.optimizer.step()
        decay = self.config.baseline_decay
        self.baseline = decay * baseline + (1.0 - decay) * mean_reward
        self.policy_version += 1
        return UpdateStats(
            loss=float(loss.detach()),
            baseline=baseline,
            mean_reward=mean_reward,
            entropy=float(entropy.detach().mean()),
            policy_version=self.policy_version,
            n=len(proposals),
            extra={"grad_norm": grad_norm} if math.isfinite(grad_norm) else {},
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "policy_version": self.policy_version,
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if dict(state["config"]) != dataclasses.asdict(self.config):
            raise ControllerError(f"checkpoint config {state['config']} differs from this controller's {self.config}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.policy_version = int(state["policy_version"])
        self.generator.set_state(state["rng"])
