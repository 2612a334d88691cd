"""Optuna's samplers (TPE, GP, QMC) as search strategies, through Optuna's ask-and-tell interface."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState, create_trial

from l2l.controllers.base import ControllerError, Proposal, UpdateStats
from l2l.controllers.unique import DistinctStrategy
from l2l.search_spaces.api import Decision, sequence_length


def _quiet(build: Callable[[int], optuna.samplers.BaseSampler]) -> Callable[[int], optuna.samplers.BaseSampler]:
    """``build`` without Optuna's ExperimentalWarning, which a sampler rebuilt before every ask would print
    again and again (QMC is experimental in Optuna; l2l's use of it is tested here)."""

    def quiet(seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return build(seed)

    return quiet


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "gp": _quiet(lambda seed: optuna.samplers.GPSampler(seed=seed)),
    "qmc": _quiet(lambda seed: optuna.samplers.QMCSampler(seed=seed, scramble=True)),
}


class OptunaController(DistinctStrategy):
    """Each proposal is an Optuna trial whose parameters are the token positions (categorical).

    The sampler is rebuilt before every ask with a seed derived from the run's seed and the
    number of trials so far, so proposals depend only on the history: a run restored from its
    checkpoint (the told trials, the trials still out and the seed) proposes exactly what the
    interrupted run did, whatever seed the restoring instance was built with.

    Results may come back in any order and in any grouping, as an asynchronous executor returns
    them: each one is told to the outstanding trial that proposed its tokens. A result for tokens
    no outstanding trial holds (a child proposed after the checkpoint a run was resumed from) joins
    the study as a finished trial. Where the space gives sequences an identity, a trial repeating one
    ends failed, unevaluated, and another is asked (`DistinctStrategy`).
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
        # trials asked but not told yet: (trial number, tokens), in the order they were proposed
        self.pending: list[tuple[int, tuple[int, ...]]] = []
        self._asked_from = 0  # where the latest `_draw`'s trials start in ``pending``

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

    def _draw(self, n: int) -> list[Proposal]:
        self._asked_from = len(self.pending)
        out = []
        for _ in range(n):
            asked = len(self.study.get_trials(deepcopy=False))  # no copy of every trial per ask
            self.study.sampler = SAMPLERS[self.sampler_name](self.seed * 100_003 + asked)
            trial = self.study.ask()
            tokens = tuple(int(trial.suggest_categorical(name, dist.choices)) for name, dist in self.params)  # type: ignore[arg-type]
            if self.constraints is not None and not self.constraints.valid(tokens):
                # the sampler knows no constraints: its trial fails unevaluated, and the nearest allowed
                # sequence goes out instead, joining the study as a trial of its own when its reward comes
                self.study.tell(trial.number, state=TrialState.FAIL)
                out.append(Proposal(self.constraints.repair(tokens), 0.0, 0.0, self.policy_version))
                continue
            self.pending.append((trial.number, tokens))
            out.append(Proposal(tokens, 0.0, 0.0, self.policy_version))
        return out

    def _fallback_generator(self) -> torch.Generator:
        # seeded, like the sampler, by the run's seed and the trials so far: a restored run draws the same
        return torch.Generator().manual_seed(self.seed * 100_019 + len(self.study.get_trials(deepcopy=False)))

    def _drop(self, proposals: Sequence[Proposal]) -> None:
        # trials of the latest draw repeating an identity end failed, unevaluated (a repaired proposal has
        # no trial of its own left to end)
        for proposal in proposals:
            for i in range(len(self.pending) - 1, self._asked_from - 1, -1):
                if self.pending[i][1] == proposal.tokens:
                    self.study.tell(self.pending.pop(i)[0], state=TrialState.FAIL)
                    break

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        for proposal, reward in zip(proposals, rewards, strict=True):
            self._tell(proposal.tokens, float(reward))
        self.policy_version += 1
        return self._gradient_free_stats(rewards, extra=self.distinct.stats())

    def _tell(self, tokens: tuple[int, ...], value: float) -> None:
        """Tell the oldest outstanding trial with these tokens; tokens none holds join as a finished trial."""
        for i, (number, pending) in enumerate(self.pending):
            if pending == tokens:
                del self.pending[i]
                self.study.tell(number, value)
                return
        self.study.add_trial(create_trial(params=self._params(tokens), distributions=dict(self.params), value=value))

    def release(self, proposals: Sequence[Proposal]) -> None:
        # candidates a screen did not pick end as failed trials, which Optuna's samplers learn nothing from
        for proposal in proposals:
            for i, (number, pending) in enumerate(self.pending):
                if pending == proposal.tokens:
                    del self.pending[i]
                    self.study.tell(number, state=TrialState.FAIL)
                    break

    def _params(self, tokens: Sequence[int]) -> dict[str, Any]:
        return {name: int(tok) for (name, _), tok in zip(self.params, tokens, strict=True)}

    def _tokens(self, trial: optuna.trial.FrozenTrial) -> list[int]:
        return [int(trial.params[name]) for name, _ in self.params]

    def state_dict(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        return {
            "kind": self.kind,
            "policy_version": self.policy_version,
            "seed": self.seed,  # the sampler's seeds derive from it
            "trials": [[self._tokens(t), float(t.value)] for t in trials if t.state == TrialState.COMPLETE],  # type: ignore[arg-type]
            # the trials still out, with their numbers: a restored study holds them in the same places
            "pending": [[t.number, self._tokens(t)] for t in trials if t.state == TrialState.RUNNING],
            # candidates a screen let go (`release`): they keep their numbers, which seed later proposals
            "released": [[t.number, self._tokens(t)] for t in trials if t.state == TrialState.FAIL],
            "distinct": self.distinct.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        told = [(list(tokens), float(value)) for tokens, value in state["trials"]]
        # checkpoints written before the seed and the outstanding trials were saved hold neither
        out = {int(number): list(tokens) for number, tokens in state.get("pending", [])}
        gone = {int(number): list(tokens) for number, tokens in state.get("released", [])}
        total = len(told) + len(out) + len(gone)
        if any(not 0 <= number < total for number in [*out, *gone]) or set(out) & set(gone):
            raise ControllerError(
                f"{self.kind} checkpoint has outstanding trial numbers {sorted(out)} and released ones "
                f"{sorted(gone)} among {total}"
            )
        self.seed = int(state.get("seed", self.seed))
        self.study = self._new_study()
        self.pending = []
        dists: dict[str, BaseDistribution] = dict(self.params)
        finished = iter(told)
        for number in range(total):
            if number in out:
                params = self._params(out[number])
                self.study.add_trial(create_trial(state=TrialState.RUNNING, params=params, distributions=dists))
                self.pending.append((number, tuple(out[number])))
            elif number in gone:
                params = self._params(gone[number])
                self.study.add_trial(create_trial(state=TrialState.FAIL, params=params, distributions=dists))
            else:
                tokens, value = next(finished)
                self.study.add_trial(create_trial(params=self._params(tokens), distributions=dists, value=value))
        self.policy_version = int(state["policy_version"])
        self.distinct.load_state_dict(state.get("distinct"))
