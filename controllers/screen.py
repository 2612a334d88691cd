"""Screening: any strategy proposes many candidates, a surrogate of the rewards so far picks which are trained.

Training a child is the expensive step of a search. `ScreenedController` wraps a strategy (written
``STRATEGY+screen``: ``reinforce+screen``, ``evolution+screen``, ...): once ``screen_warmup`` rewards have
arrived, each proposal is the best, by one member of a surrogate (`l2l.controllers.surrogate`), of a pool
holding ``screen`` candidates of the wrapped strategy, ``screen_uniform`` uniform draws from the space and
the one-token neighbours of the ``screen_local`` best sequences so far. The wrapped strategy still learns
from every reward; the screen only chooses what it is given to learn from.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Container, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from l2l.controllers.base import (
    Controller,
    ControllerError,
    Ledger,
    Proposal,
    UpdateStats,
    checked_proposals,
    pack_tokens,
    unpack_tokens,
)
from l2l.controllers.constrained import neighbours, uniform_allowed
from l2l.controllers.names import SCREEN_SUFFIX as SUFFIX
from l2l.controllers.reward_window import RewardWindow
from l2l.controllers.surrogate import HammingGP, RidgeEnsemble
from l2l.search_spaces.api import token_sizes
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.typed import coerce_fields

SCREEN_MODELS = ("gp", "ridge")

Pick = tuple[tuple[int, ...], Proposal | None]


@dataclass(frozen=True)
class ScreenConfig:
    """Settings of the screen (``-C screen_...``).

    ``screen`` candidates of the wrapped strategy per proposal (0 or 1: no screening); ``screen_warmup``
    rewards before the first screened proposal; ``screen_uniform`` uniform draws of unproposed sequences
    per proposal, so the model can pick a cell in a region the strategy has stopped sampling;
    ``screen_local`` best sequences whose one-token neighbours join the pool. ``screen_model`` picks the
    surrogate: ``ridge``, a bootstrap ensemble of ``screen_members`` ridge regressions (penalty
    ``screen_ridge``, random prior weights of scale ``screen_prior``), or ``gp``, a Gaussian process whose
    kernel is ``screen_mix`` additive and the rest a product over positions, which takes over from the
    ridge ensemble once ``screen_gp_from`` rewards have arrived. Past ``screen_points`` rewards the
    surrogate is fitted to the latest half of that many and the best of the older ones
    (`l2l.controllers.reward_window`), so a long search pays the same per child at any length.
    """

    screen: int = 10
    screen_members: int = 8
    screen_ridge: float = 0.3
    screen_warmup: int = 10
    screen_uniform: int = 30
    screen_local: int = 1
    screen_prior: float = 0.35
    screen_model: str = "gp"
    screen_mix: float = 0.2
    screen_gp_from: int = 100
    screen_points: int = 400

    def __post_init__(self) -> None:
        if self.screen < 0 or self.screen_members < 1 or self.screen_warmup < 1 or self.screen_ridge <= 0:
            raise ControllerError(
                "screen must be >= 0, screen_members and screen_warmup >= 1 and screen_ridge > 0; got "
                f"{self.screen}, {self.screen_members}, {self.screen_warmup}, {self.screen_ridge}"
            )
        if self.screen_points < 2:
            raise ControllerError(f"screen_points must be >= 2, got {self.screen_points}")
        for name in ("screen_prior", "screen_local", "screen_uniform", "screen_gp_from"):
            if getattr(self, name) < 0:
                raise ControllerError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.screen_model not in SCREEN_MODELS:
            raise ControllerError(f"unknown screen_model {self.screen_model!r}; known: {', '.join(SCREEN_MODELS)}")
        if not 0.0 <= self.screen_mix <= 1.0:
            raise ControllerError(f"screen_mix must be in [0, 1], got {self.screen_mix}")


SCREEN_SETTINGS = tuple(f.name for f in dataclasses.fields(ScreenConfig))


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the screen's settings, the wrapped strategy's settings) of one ``-C`` mapping."""
    screen = {k: v for k, v in settings.items() if k in SCREEN_SETTINGS}
    return screen, {k: v for k, v in settings.items() if k not in SCREEN_SETTINGS}


class ScreenedController(Controller):
    """A strategy whose proposals are picked from a larger pool by a surrogate of the rewards seen so far."""

    def __init__(self, base: Controller, config: ScreenConfig | None = None) -> None:
        super().__init__(base.decisions, base.seed)
        self.base = base
        self.kind = f"{base.kind}{SUFFIX}"
        self.config = config or ScreenConfig()
        # uniform draws come from the wrapped strategy's stream: a run has one seeded stream, so a resumed
        # run (whose state holds that stream) draws what an uninterrupted one would
        self.generator = base.generator
        self.reward_transform = base.reward_transform
        self.policy_version = base.policy_version
        self.history: list[tuple[tuple[int, ...], float]] = []  # every (tokens, reward) learned from
        self._evaluated: set[tuple[int, ...]] = set()  # the sequences in the history
        # proposed and not learned from yet (an asynchronous search's children in flight), with their count
        self._in_flight: Counter[tuple[int, ...]] = Counter()
        self._window = RewardWindow(self.config.screen_points, self.config.screen_local)  # what a fit sees
        self._n_learned = 0  # how many rewards a lean checkpoint's ledger must hold
        self._gp_hyper: tuple[float, float, int] | None = None  # the GP's scale and noise, and when chosen
        self._surrogate: RidgeEnsemble | HammingGP | None = None
        self._surrogate_size = -1  # len(history) when the surrogate was fitted
        self._member = 0

    def draw(self, n: int) -> list[tuple[int, ...]]:
        return self.base.draw(n)  # the wrapped strategy's distribution; the screen picks proposals only

    def constrain(self, constraints: Constraints | None) -> None:
        super().constrain(constraints)
        self.base.constrain(constraints)

    def identify(self, identity: Callable[[Sequence[int]], Hashable] | None) -> None:
        super().identify(identity)
        self.base.identify(identity)

    def plan(self, children: int) -> None:
        self.base.plan(children)

    def note_proposed(self, proposals: Sequence[Proposal]) -> None:
        self.base.note_proposed(proposals)
        self._in_flight.update(p.tokens for p in proposals)

    @classmethod
    def from_settings(cls, base: Controller, settings: Mapping[str, Any]) -> ScreenedController:
        """Wrap ``base`` with the screen settings in ``settings`` (names as in `ScreenConfig`)."""
        unknown = sorted(set(settings) - set(SCREEN_SETTINGS))
        if unknown:
            raise ControllerError(f"unknown screen setting(s) {unknown}; known: {', '.join(SCREEN_SETTINGS)}")
        try:
            return cls(base, ScreenConfig(**coerce_fields(ScreenConfig, settings, "screen setting")))
        except (TypeError, ValueError) as exc:
            raise ControllerError(str(exc)) from None

    @property
    def surrogate(self) -> RidgeEnsemble | HammingGP | None:
        """The model that screened the latest proposals (None before the first screened one)."""
        return self._surrogate

    def _screening(self) -> bool:
        return self.config.screen > 1 and len(self.history) >= self.config.screen_warmup

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        # every proposal is in flight until it is learned from: the screen leaves it out meanwhile
        if not self._screening():
            return self._flying(checked_proposals(self.base, self.base.propose(n), n))
        chosen: list[Proposal] = []
        # a strategy that never repeats may drop picks it proposed meanwhile: screen again for the rest
        while len(chosen) < n and not self.base.exhausted:
            picks = self._screened(n - len(chosen))
            if not picks:  # every candidate was evaluated before
                break
            chosen.extend(self._flying(self.base.adopt(picks)))
        if len(chosen) < n:  # nothing new is left to screen: the strategy's own proposals, repeats included
            rest = n - len(chosen)
            chosen.extend(self._flying(checked_proposals(self.base, self.base.propose(rest), rest)))
        return chosen

    def _flying(self, proposals: list[Proposal]) -> list[Proposal]:
        self._in_flight.update(p.tokens for p in proposals)
        return proposals

    def _screened(self, n: int) -> list[Pick]:
        """``n`` distinct picks, each the best of the pool by one surrogate member (a bootstrap fit or a
        posterior draw)."""
        candidates = self.base.candidates(n * self.config.screen)
        # a sequence with a reward is not worth a second child here (re-evaluating noisy rewards is another
        # decision), nor is one still training (an asynchronous search's), nor, for a strategy that never
        # repeats, one it proposed before
        before = _Either(self.base.proposed_before(), self._evaluated, self._in_flight)
        pool: dict[tuple[int, ...], Proposal | None] = {}
        for p in candidates:
            if p.tokens not in before:
                pool.setdefault(p.tokens, p)
        for t in self._uniform(n * self.config.screen_uniform, pool, before) + self._neighbours(pool, before):
            pool[t] = None  # scored by the wrapped strategy (`Controller.adopt`), if picked
        tokens = list(pool)
        if not tokens:
            self.base.release(candidates)
            return []
        model = self._fitted_surrogate()
        scores = model.scores(tokens)
        picked: list[int] = []
        taken = torch.zeros(len(tokens), dtype=torch.bool)
        for _ in range(min(n, len(tokens))):
            row = scores[self._member % model.members].masked_fill(taken, float("-inf"))
            self._member += 1
            best = int(torch.argmax(row))
            taken[best] = True
            picked.append(best)
        picks = [(tokens[i], pool[tokens[i]]) for i in picked]
        kept = {id(p) for _, p in picks if p is not None}
        self.base.release([p for p in candidates if id(p) not in kept])
        return picks

    def _fitted_surrogate(self) -> RidgeEnsemble | HammingGP:
        """The surrogate fitted to the history's `RewardWindow`, refitted only when the history has grown.

        Its bootstrap (ridge) or posterior (GP) draws come from a generator seeded by the run's seed and
        the history's length, so a resumed run refits exactly the model an uninterrupted one had.

        Past ``screen_points`` rewards the GP's kernel scale and noise are chosen again (by marginal
        likelihood over the grid) only once every ``screen_points // 4`` rewards, and kept in between (and
        in the checkpoint): a fit is then one factorization of a bounded matrix."""
        n = len(self.history)
        if self._surrogate is None or self._surrogate_size != n:
            c = self.config
            model: RidgeEnsemble | HammingGP
            draws = torch.Generator().manual_seed(self.seed * 1_000_003 + n)
            if c.screen_model == "gp" and n >= c.screen_gp_from:
                model = HammingGP(token_sizes(self.decisions), c.screen_members, c.screen_mix, c.screen_points)
                period = n // max(1, c.screen_points // 4) if n > c.screen_points else -1
                keep = self._gp_hyper is not None and period >= 0 and self._gp_hyper[2] == period
                model.fit(*self._window.points(), draws, self._gp_hyper[:2] if keep and self._gp_hyper else None)
                self._gp_hyper = (model.scale, model.noise, period)
            else:
                model = RidgeEnsemble(token_sizes(self.decisions), c.screen_members, c.screen_ridge, c.screen_prior)
                model.fit(*self._window.points(), draws)
            self._surrogate, self._surrogate_size, self._member = model, n, 0
        return self._surrogate

    def _uniform(
        self, n: int, pool: Mapping[tuple[int, ...], Any], before: Container[tuple[int, ...]]
    ) -> list[tuple[int, ...]]:
        """Up to ``n`` sequences drawn uniformly from the whole space, without those in the pool or proposed
        ``before``. Every token sequence is a valid candidate: each position's values are those a
        strategy can propose there."""
        if n < 1:
            return []
        if self.constraints is not None:
            drawn = dict.fromkeys(uniform_allowed(self.constraints, n, self.generator))
            return [t for t in drawn if t not in pool and t not in before]
        columns = [torch.randint(size, (n,), generator=self.generator) for size in token_sizes(self.decisions)]
        drawn = dict.fromkeys(tuple(row) for row in torch.stack(columns, dim=1).tolist())
        return [t for t in drawn if t not in pool and t not in before]

    def _neighbours(
        self, pool: Mapping[tuple[int, ...], Any], before: Container[tuple[int, ...]]
    ) -> list[tuple[int, ...]]:
        """The sequences one token away from each of the ``screen_local`` best sequences learned from, without
        those in the pool or proposed ``before``: the neighbourhood of the incumbents, where evolution and
        TPE search."""
        found: dict[tuple[int, ...], None] = {}
        for tokens in self._window.best():
            if self.constraints is not None:  # the allowed architectures one decision away
                found.update(dict.fromkeys(neighbours(tokens, self.decisions, self.constraints)))
                continue
            for i, size in enumerate(token_sizes(self.decisions)):
                for value in range(size):
                    if value != tokens[i]:
                        found[(*tokens[:i], value, *tokens[i + 1 :])] = None
        return [t for t in found if t not in pool and t not in before]

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        stats = self.base.update(proposals, rewards)  # validates the batch before the history keeps it
        self._learn([(p.tokens, float(r)) for p, r in zip(proposals, rewards, strict=True)])
        self.policy_version = self.base.policy_version
        return stats

    def observe(self, tokens: Sequence[int], reward: float) -> None:
        # the surrogate's points: a repeated evaluation tells the GP how noisy the rewards are
        self._learn([(tuple(int(t) for t in tokens), float(reward))])

    def _learn(self, pairs: Sequence[tuple[tuple[int, ...], float]]) -> None:
        self.history.extend(pairs)
        for tokens, reward in pairs:
            self._evaluated.add(tokens)
            self._window.add(tokens, reward)
            if self._in_flight[tokens] > 1:
                self._in_flight[tokens] -= 1
            else:
                self._in_flight.pop(tokens, None)

    def _forget(self) -> None:
        """No history: what `load_state_dict` starts from."""
        self.history, self._evaluated, self._in_flight = [], set(), Counter()
        self._window = RewardWindow(self.config.screen_points, self.config.screen_local)
        self._surrogate, self._surrogate_size, self._member = None, -1, 0

    def _core_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "rng": self.generator.get_state(),  # the uniform draws' stream, which not every strategy saves
            "seed": self.seed,  # seeds the surrogate's bootstrap and posterior draws
            "gp_hyper": list(self._gp_hyper) if self._gp_hyper is not None else None,
            "in_flight": pack_tokens(list(self._in_flight.elements())),  # a resumed run screens them out too
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._core_state(),
            "base": self.base.state_dict(),
            "history_tokens": pack_tokens([t for t, _ in self.history]),
            "history_rewards": torch.tensor([r for _, r in self.history], dtype=torch.float64),
        }

    def lean_state_dict(self) -> dict[str, Any]:
        # the history is the run's rewarded children: `restore` takes it from the ledger
        return {**self._core_state(), "base": self.base.lean_state_dict(), "n_learned": len(self.history)}

    def restore(self, ledger: Ledger) -> None:
        self.base.restore(ledger)
        if len(ledger.learned) != self._n_learned:
            raise ControllerError(
                f"{self.kind} checkpoint had learned from {self._n_learned} rewards but the ledger holds "
                f"{len(ledger.learned)}; checkpoint and children disagree"
            )
        flying = self._in_flight  # the checkpoint's (`load_state_dict`): not learned from, whatever the ledger holds
        self._forget()
        self._learn([(tuple(t), float(r)) for t, r in ledger.learned])
        self._in_flight = flying

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        stored = {**dataclasses.asdict(ScreenConfig()), **dict(state["config"])}
        if stored != dataclasses.asdict(self.config):
            raise ControllerError(f"checkpoint screen config {state['config']} differs from this one's {self.config}")
        self.base.load_state_dict(state["base"])
        self.generator.set_state(state["rng"])
        self._forget()
        if "history_tokens" in state:  # a lean state (`lean_state_dict`) leaves the history to `restore`
            rewards = [float(r) for r in state["history_rewards"].tolist()]
            self._learn(list(zip(unpack_tokens(state["history_tokens"]), rewards, strict=True)))
        self._in_flight = Counter(unpack_tokens(state["in_flight"])) if "in_flight" in state else Counter()
        self._n_learned = int(state.get("n_learned", len(self.history)))
        hyper = state.get("gp_hyper")
        self._gp_hyper = (float(hyper[0]), float(hyper[1]), int(hyper[2])) if hyper is not None else None
        self.seed = int(state["seed"])
        self.policy_version = self.base.policy_version


class _Either:
    """Membership in any of some collections, without building their union for every screened batch."""

    def __init__(self, *collections: Container[tuple[int, ...]]) -> None:
        self.collections = collections

    def __contains__(self, item: object) -> bool:
        return any(item in c for c in self.collections)
