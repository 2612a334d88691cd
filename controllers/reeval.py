"""Re-evaluation: any strategy, wrapped, spends some children on evaluating promising architectures again.

A reward is one draw of a noisy measurement, so the architecture with the highest single reward is often
one that got lucky. `ReevaluatedController` (written ``STRATEGY+reeval``, or ``STRATEGY+screen+reeval``)
keeps every evaluation grouped by architecture (`l2l.controllers.noise`) and races the top by estimated
mean against its most dangerous challenger, as SMAC's intensification races a challenger against the
incumbent: the challenger is the one with the highest upper bound among the next ``reeval_challengers``
(LUCB's rule for naming the best arm), and while the two intervals (``reeval_z`` posterior sds either
side) overlap, the one whose estimate is less certain is evaluated again, with a new child seed, in
place of a new candidate. If both are at ``reeval_max``, nothing is (the other challengers wait for the
pair to change). The noise comes from the run's own repeated evaluations; until ``reeval_noise_df``
repeats have measured it, the top architecture is the one evaluated again. When the noise is small
against the gaps at the top, nothing is re-evaluated; a space whose rewards are exact
(`SearchSpace.exact_rewards`) never re-evaluates. Re-evaluations are children like any other (they count
against ``--children``); at most ``reeval_share`` of the proposals are re-evaluations, and no
architecture gets more than ``reeval_max`` evaluations. A search tells the wrapper its number of children
(`Controller.plan`): in the last ``reeval_final`` share of them, naming the best matters more than finding
a new candidate no evaluation will confirm, so the race runs without either limit (a fixed-budget finish,
as in best-arm identification); new candidates are proposed only while the top is clear.

The wrapped strategy learns from its own proposals only, each rewarded with its architecture's mean
reward so far; a re-evaluation's reward goes to its model of the rewards (`Controller.observe`: the
screen's surrogate then sees the repeated evaluations and fits the noise).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from l2l.controllers.base import (
    Controller,
    ControllerError,
    Proposal,
    UpdateStats,
    checked_proposals,
    pack_tokens,
    unpack_tokens,
)
from l2l.controllers.names import REEVAL_SUFFIX as SUFFIX
from l2l.controllers.noise import ArchEstimate, Evaluations
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.typed import coerce_fields

REEVALUATION = -1  # the policy version of a proposal that evaluates an architecture again

Tokens = tuple[int, ...]


@dataclass(frozen=True)
class ReevalConfig:
    """Settings of re-evaluation (``-C reeval_...``); see the module's docstring."""

    reeval_z: float = 1.0
    reeval_max: int = 8
    reeval_share: float = 0.15
    reeval_noise_df: int = 2
    reeval_challengers: int = 4  # chosen on seeds 0-39 of benchmarks.noisy over 1 (the runner-up alone) and 8
    reeval_final: float = 0.2  # chosen on seeds 0-39 of benchmarks.noisy (sd 0.5) over 0, 0.3 and 0.5

    def __post_init__(self) -> None:
        if not self.reeval_z > 0:
            raise ControllerError(f"re-evaluation setting reeval_z must be > 0, got {self.reeval_z}")
        if min(self.reeval_max, self.reeval_noise_df, self.reeval_challengers) < 1:
            raise ControllerError(
                "re-evaluation settings reeval_max, reeval_noise_df and reeval_challengers must be >= 1, got "
                f"{self.reeval_max}, {self.reeval_noise_df}, {self.reeval_challengers}"
            )
        if not 0.0 <= self.reeval_share < 1.0:
            raise ControllerError(f"re-evaluation setting reeval_share must be in [0, 1), got {self.reeval_share}")
        if not 0.0 <= self.reeval_final < 1.0:
            raise ControllerError(f"re-evaluation setting reeval_final must be in [0, 1), got {self.reeval_final}")


REEVAL_SETTINGS = tuple(f.name for f in dataclasses.fields(ReevalConfig))


class ReevaluatedController(Controller):
    """A strategy some of whose proposals are repeated evaluations of the top architectures."""

    def __init__(self, base: Controller, config: ReevalConfig | None = None, exact: bool = False) -> None:
        super().__init__(base.decisions, base.seed)
        self.base = base
        self.kind = f"{base.kind}{SUFFIX}"
        self.config = config or ReevalConfig()
        self.exact = exact
        self.generator = base.generator
        self.reward_transform = base.reward_transform
        self.evaluations = Evaluations()
        self._tokens: dict[Tokens, Tokens] = {}  # architecture key -> the sequence first evaluated for it
        self._pending: dict[Tokens, int] = {}  # re-evaluations proposed and not yet learned from, per key
        self.proposed = 0
        self.reevaluated = 0  # proposals that were re-evaluations
        self.budget: int | None = None  # the run's number of children, where the search told it (`plan`)
        self._learned: UpdateStats | None = None  # the strategy's latest update (not checkpointed: display only)
        # this wrapper's policy version counts every update, the wrapped strategy's only those it learned from
        # (a batch of re-evaluations teaches it nothing): the strategy's version at each of ours, to stamp back
        self._base_versions: list[int] = [base.policy_version]
        self.policy_version = 0

    @classmethod
    def from_settings(cls, base: Controller, settings: Mapping[str, Any], exact: bool = False) -> ReevaluatedController:
        """Wrap ``base`` with the ``reeval_*`` settings in ``settings``."""
        unknown = sorted(set(settings) - set(REEVAL_SETTINGS))
        if unknown:
            raise ControllerError(f"unknown re-evaluation setting(s) {unknown}; known: {', '.join(REEVAL_SETTINGS)}")
        try:
            return cls(base, ReevalConfig(**coerce_fields(ReevalConfig, settings, "re-evaluation setting")), exact)
        except (TypeError, ValueError) as exc:
            raise ControllerError(str(exc)) from None

    def constrain(self, constraints: Constraints | None) -> None:
        super().constrain(constraints)
        self.base.constrain(constraints)

    def identify(self, identity: Callable[[Sequence[int]], Hashable] | None) -> None:
        super().identify(identity)
        self.base.identify(identity)

    def key(self, tokens: Sequence[int]) -> Tokens:
        """The architecture of a token sequence: its canonical sequence where the space declares one."""
        return self.constraints.canonical(tokens) if self.constraints is not None else tuple(int(t) for t in tokens)

    def plan(self, children: int) -> None:
        self.budget = children
        self.base.plan(children)

    def note_proposed(self, proposals: Sequence[Proposal]) -> None:
        """Count the children proposed after the checkpoint as proposed (the finish starts on time), the
        re-evaluations among them as in flight."""
        for p in proposals:
            self.proposed += 1
            if p.policy_version == REEVALUATION:
                self.reevaluated += 1
                key = self.key(p.tokens)
                self._pending[key] = self._pending.get(key, 0) + 1
        self.base.note_proposed([p for p in proposals if p.policy_version != REEVALUATION])

    def final(self) -> bool:
        """Whether the run is in its last ``reeval_final`` share of children (known once `plan` told the budget),
        where naming the best matters more than finding new candidates: no share or per-architecture limit."""
        return self.budget is not None and self.proposed >= (1.0 - self.config.reeval_final) * self.budget

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        out: list[Proposal] = []
        # the top and its challengers by estimate; the evaluations in flight (pending) change only how sure each will be
        top = [] if self.exact else self.evaluations.estimates(limit=1 + self.config.reeval_challengers)

        def allowed() -> bool:
            # counting the one it would add: 2 of the first 7 were re-evaluations at a share of 0.15
            return self.final() or self.reevaluated + 1 <= self.config.reeval_share * (self.proposed + 1)

        while len(out) < n and top and allowed():
            target = self._target(top)
            if target is None:
                break
            self._pending[target] = self._pending.get(target, 0) + 1
            out.append(Proposal(self._tokens[target], 0.0, 0.0, REEVALUATION))
            self.reevaluated += 1
            self.proposed += 1
        if len(out) < n:
            fresh = checked_proposals(self.base, self.base.propose(n - len(out)), n - len(out))
            self.proposed += len(fresh)
            out.extend(dataclasses.replace(p, policy_version=self.policy_version) for p in fresh)
        return out

    def _target(self, top: list[ArchEstimate]) -> Tokens | None:
        """The architecture to evaluate again now, or None when the top one is clear (or at its limit).

        The top by estimate races the challenger with the highest upper bound among the next
        ``reeval_challengers`` (LUCB's rule for naming the best arm; 1: the runner-up)."""
        if len(top) < 2:
            return None
        keys = [cast(Tokens, e.key) for e in top]
        seen = [e.n + self._pending.get(k, 0) for e, k in zip(top, keys, strict=True)]  # counting those in flight
        pending = sum(self._pending.values())
        if self.evaluations.noise_df < self.config.reeval_noise_df or top[0].sd is None:
            # the noise is not measured yet: evaluate the top again, until reeval_noise_df repeats are in or in flight
            measuring = self.evaluations.noise_df + pending < self.config.reeval_noise_df
            return keys[0] if measuring and seen[0] < self.config.reeval_max else None
        z = self.config.reeval_z
        # each sd as it will be once the evaluations in flight are in
        sds = [e.sd * (e.n / count) ** 0.5 for e, count in zip(top, seen, strict=True)]  # type: ignore[operator]
        upper = [e.estimate + z * sd for e, sd in zip(top, sds, strict=True)]
        c = max(range(1, len(top)), key=lambda i: (upper[i], -i))  # the highest upper bound; the better on ties
        if max(sds[0], sds[c]) == 0.0 or top[0].estimate - z * sds[0] > upper[c]:
            return None  # the top is clear of every challenger (or a tie that no evaluation can break)
        cap = math.inf if self.final() else self.config.reeval_max
        for i in sorted((0, c), key=lambda i: (-sds[i], i)):  # the less certain first, the top on ties
            if seen[i] < cap:
                return keys[i]
        return None

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)  # before anything is counted: a rejected batch changes nothing
        own: list[tuple[Proposal, Tokens]] = []
        again = 0
        for p, r in zip(proposals, rewards, strict=True):
            key = self.key(p.tokens)
            self._tokens.setdefault(key, tuple(p.tokens))
            self.evaluations.add(key, float(r))
            if p.policy_version == REEVALUATION:
                again += 1
                left = self._pending.get(key, 0) - 1
                if left > 0:
                    self._pending[key] = left
                else:
                    self._pending.pop(key, None)
                self.base.observe(p.tokens, float(r))
            else:
                version = (
                    self._base_versions[p.policy_version]
                    if 0 <= p.policy_version < len(self._base_versions)
                    else self.base.policy_version
                )
                own.append((dataclasses.replace(p, policy_version=version), key))
        if own:  # each of the strategy's own proposals rewarded with its architecture's mean so far
            stats = self._learned = self.base.update([p for p, _ in own], [self.evaluations.mean(k) for _, k in own])
        else:  # a batch of re-evaluations teaches the strategy nothing: its entropy and baseline stand
            last = self._learned
            stats = self._gradient_free_stats([float(r) for r in rewards], last.entropy if last else 0.0)
            stats = dataclasses.replace(stats, baseline=last.baseline if last else None)
        self.policy_version += 1
        self._base_versions.append(self.base.policy_version)
        extra = {**stats.extra, "reevaluated": float(again)}
        noise = self.evaluations.noise_sd()
        if noise is not None:
            extra["noise_sd"] = noise
        # the batch as the run saw it: every child, re-evaluations included
        mean = sum(float(r) for r in rewards) / len(rewards)
        return dataclasses.replace(
            stats, extra=extra, policy_version=self.policy_version, n=len(rewards), mean_reward=mean
        )

    def observe(self, tokens: Sequence[int], reward: float) -> None:
        self.base.observe(tokens, reward)

    def draw(self, n: int) -> list[Tokens]:
        return self.base.draw(n)

    def state_dict(self) -> dict[str, Any]:
        evaluations = self.evaluations.state()
        keys = evaluations.pop("keys")
        return {
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "base": self.base.state_dict(),  # whole: the strategy learned from a subset of the run's rewards
            "keys": pack_tokens(keys),
            "first_tokens": pack_tokens([self._tokens[k] for k in keys]),
            "evaluations": evaluations,
            "pending_keys": pack_tokens(list(self._pending)),
            "pending_counts": list(self._pending.values()),
            "proposed": self.proposed,
            "reevaluated": self.reevaluated,
            "policy_version": self.policy_version,
            "base_versions": torch.tensor(self._base_versions, dtype=torch.long),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        stored = {**dataclasses.asdict(ReevalConfig()), **dict(state["config"])}
        if stored != dataclasses.asdict(self.config):
            raise ControllerError(f"checkpoint re-evaluation config {state['config']} differs from {self.config}")
        self.base.load_state_dict(state["base"])
        keys = unpack_tokens(state["keys"])
        self.evaluations = Evaluations.from_state({**dict(state["evaluations"]), "keys": keys})
        self._tokens = dict(zip(keys, unpack_tokens(state["first_tokens"]), strict=True))
        pending = unpack_tokens(state["pending_keys"])
        self._pending = dict(zip(pending, (int(c) for c in state["pending_counts"]), strict=True))
        self.proposed, self.reevaluated = int(state["proposed"]), int(state["reevaluated"])
        self.policy_version = int(state["policy_version"])
        self._base_versions = [int(v) for v in state["base_versions"].tolist()]
