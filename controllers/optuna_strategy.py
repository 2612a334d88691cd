"""Optuna's samplers (TPE, GP, QMC) as search strategies, through Optuna's ask-and-tell interface."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import Trial

from l2l.controllers.base import Controller, ControllerError, Proposal, UpdateStats
from l2l.search_spaces.api import Decision, sequence_length

SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, scramble=True),
}


class OptunaController(Controller):
    """Each proposal is an Optuna trial whose parameters are the token positions (categorical).

    The sampler is rebuilt before every ask with a seed derived from the run's seed and the
    number of trials so far, so proposals depend only on the history: a run restored from its
    checkpoint (the history of told trials) proposes exactly what the interrupted run did.
    """

    kind = "optuna"

    def __init__(
        self, decisions: Sequence[Decision], seed: int, sampler: str = "tpe", reward_transform: str = "reward"
    ) -> None:
        super().__init__(decisions, seed)
        if sampler not in SAMPLERS:
            raise ControllerError(f"unknown Optuna sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
        if sequence_length(self.decisions) == 0:
            raise ControllerError("the decisions hold no choice to sample")
        self.sampler_name, self.reward_transform = sampler, reward_transform
        self.kind = sampler
        self.params: list[tuple[str, CategoricalDistribution]] = []
        for d in self.decisions:
            names = [d.name] if d.kind == "categorical" else [f"{d.name}.{j}" for j in range(d.n_prev)]
            self.params += [(name, CategoricalDistribution(list(range(d.n_choices)))) for name in names]
        self.study = self._new_study()
        self.pending: list[Trial] = []

    def _new_study(self) -> optuna.Study:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(direction="maximize", sampler=SAMPLERS[self.sampler_name](self.seed))

    @classmethod
    def for_sampler(cls, sampler: str) -> Callable[[Sequence[Decision], int, Mapping[str, Any]], OptunaController]:
        """A factory building this controller with Optuna's ``sampler``, for the strategy table."""

        def build(decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]) -> OptunaController:
            unknown = sorted(set(settings) - {"reward_transform"})
            if unknown:
                raise ControllerError(f"unknown {sampler} setting(s) {unknown}; known: reward_transform")
            return cls(decisions, seed, sampler=sampler, **settings)

        return build

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        out = []
        for _ in range(n):
            self.study.sampler = SAMPLERS[self.sampler_name](self.seed * 100_003 + len(self.study.trials))
            trial = self.study.ask()
            tokens = tuple(int(trial.suggest_categorical(name, dist.choices)) for name, dist in self.params)  # type: ignore[arg-type]
            self.pending.append(trial)
            out.append(Proposal(tokens, 0.0, 0.0, self.policy_version))
        return out

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        if len(self.pending) < len(proposals):
            raise ControllerError(f"update got {len(proposals)} proposals but only {len(self.pending)} are pending")
        for proposal, reward in zip(proposals, rewards, strict=True):
            trial = self.pending.pop(0)
            tokens = tuple(int(trial.params[name]) for name, _ in self.params)
            if tokens != proposal.tokens:
                raise ControllerError(f"proposal {list(proposal.tokens)} is not the pending trial {list(tokens)}")
            self.study.tell(trial, float(reward))
        self.policy_version += 1
        return self._gradient_free_stats(rewards)

    def state_dict(self) -> dict[str, Any]:
        told = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        return {
            "kind": self.kind,
            "policy_version": self.policy_version,
            "trials": [[[int(t.params[name]) for name, _ in self.params], float(t.value)] for t in told],  # type: ignore[arg-type]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.study = self._new_study()
        self.pending = []
        dists: dict[str, BaseDistribution] = dict(self.params)
        for tokens, value in state["trials"]:
            params = {name: int(tok) for (name, _), tok in zip(self.params, tokens, strict=True)}
            self.study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        self.policy_version = int(state["policy_version"])
