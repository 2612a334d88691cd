"""REINFORCE on the LSTM policy (Zoph & Le), with the settings of the papers as presets."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Container, Hashable, Mapping, Sequence
from typing import Any

import torch

from l2l.controllers import policy_gradient as pg
from l2l.controllers.base import Controller, ControllerError, Ledger, Proposal, UpdateStats, pack_tokens, unpack_tokens
from l2l.controllers.constrained import allowed_mask, both
from l2l.controllers.policy import LSTMPolicy
from l2l.controllers.reinforce_config import PPOConfig, ReinforceConfig, build_config
from l2l.controllers.screen import SCREEN_SETTINGS
from l2l.controllers.unique import Distinct, Known, SeenTree, sample_unique
from l2l.search_spaces.api import Decision, token_sizes


class ReinforceController(Controller):
    """Policy gradient with an exponential-moving-average baseline and an optional entropy bonus.

    With ``unique`` the controller never proposes a sequence it proposed before: it samples from
    the policy restricted to the unproposed sequences (see `SeenTree`), and repeats only once the
    whole space has been proposed, so no budget is spent on a candidate twice. Where the space gives
    sequences an identity (`Controller.identify`), a sampled sequence whose identity was proposed before
    is rejected (not sampled again until the space runs out) and another drawn, in at most `PASSES` passes
    per call; past them, new sequences of known identities go out, counted (`Distinct`). The gradient sees
    the proposals only."""

    kind = "reinforce"
    config_type: type[ReinforceConfig] = ReinforceConfig

    def __init__(self, decisions: Sequence[Decision], seed: int, config: ReinforceConfig | None = None) -> None:
        super().__init__(decisions, seed)
        self.config = config or self.config_type()
        if not isinstance(self.config, self.config_type):
            raise ControllerError(f"{self.kind} needs a {self.config_type.__name__}, got {type(self.config).__name__}")
        self.reward_transform = self.config.reward_transform
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # parameter init is part of the run's seeded state
            self.policy = LSTMPolicy(
                self.decisions, c.hidden_size, c.lstm_layers, c.init_range, c.temperature, c.tanh_constant
            )
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.lr)
        self.baseline = pg.EMABaseline(c.baseline_decay)
        self.seen: set[tuple[int, ...]] = set()
        self._n_seen = 0  # how many sequences a lean checkpoint's ledger must hold
        self._seen_tree: SeenTree | None = None
        self.rejected: set[tuple[int, ...]] = set()  # sampled, never proposed: their identity was
        self.distinct = Distinct()
        self.elite: list[tuple[float, tuple[int, ...]]] = []

    @classmethod
    def from_settings(
        cls, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]
    ) -> ReinforceController:
        """Build from user settings (see `build_config`)."""
        return cls(decisions, seed, build_config(settings, cls.config_type))

    def _sample(self, n: int, tree: SeenTree | None = None) -> list[Proposal]:
        with torch.no_grad():
            allowed = both(tree.allowed if tree is not None else None, self._constraint_mask())
            tokens, log_prob, entropy = self.policy(n, generator=self.generator, allowed=allowed)
        return [
            Proposal(tuple(int(t) for t in row), float(lp), float(ent), self.policy_version)
            for row, lp, ent in zip(tokens.tolist(), log_prob, entropy, strict=True)
        ]

    def draw(self, n: int) -> list[tuple[int, ...]]:
        return [p.tokens for p in self._sample(n)]  # the policy's own distribution, repeats allowed

    def identify(self, identity: Callable[[Sequence[int]], Hashable] | None) -> None:
        super().identify(identity)
        self.distinct.key = identity if self.config.unique else None

    def _constraint_mask(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return allowed_mask(self.constraints) if self.constraints is not None else None

    def _tree(self) -> SeenTree:
        if self._seen_tree is None:
            self._seen_tree = SeenTree(token_sizes(self.decisions), self.seen | self.rejected, self.constraints)
        return self._seen_tree

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        if not self.config.unique:
            return self._sample(n)
        return sample_unique(n, self._tree(), self.distinct, self._sample, self._keep_new, self._repeat)

    def note_proposed(self, proposals: Sequence[Proposal]) -> None:
        self._keep_new(proposals, force=True)  # sequences (and identities) proposed: not again

    def _repeat(self, tokens: tuple[int, ...]) -> None:  # proposed once the space ran out: a child, not rejected
        self.seen.add(tokens)
        self.rejected.discard(tokens)

    def _keep_new(self, proposals: Sequence[Proposal], force: bool = False) -> list[Proposal]:
        """The proposals of sequences not proposed before (all of them without ``unique``), now marked; a new
        sequence of an identity proposed before is rejected (kept out of later samples), unless ``force``."""
        if not self.config.unique:
            return list(proposals)
        tree, kept = self._tree(), []
        for p in proposals:
            if not tree.add(p.tokens):
                continue
            if self.distinct.take(p.tokens, force):
                self.seen.add(p.tokens)
                kept.append(p)
            else:
                self.rejected.add(p.tokens)
        return kept

    # screening hooks (`Controller.candidates`): samples among the unproposed sequences, marked once adopted

    def candidates(self, n: int) -> list[Proposal]:
        return self._sample(n, self._tree() if self.config.unique else None)

    def adopt(self, picks: Sequence[tuple[tuple[int, ...], Proposal | None]]) -> list[Proposal]:
        # picks the policy did not sample get its current log-prob and entropy (one scoring pass), as if it
        # had sampled them: what the gradient and PPO's ratio use
        drawn = [t for t, p in picks if p is None]
        scored: dict[tuple[int, ...], Proposal] = {}
        if drawn:
            with torch.no_grad():
                _, log_prob, entropy = self.policy(len(drawn), forced=torch.tensor(drawn, dtype=torch.long))
            for t, lp, ent in zip(drawn, log_prob.tolist(), entropy.tolist(), strict=True):
                scored[t] = Proposal(t, lp, ent, self.policy_version)
        return self._keep_new([p if p is not None else scored[t] for t, p in picks])

    def proposed_before(self) -> Container[tuple[int, ...]]:
        if not self.config.unique:
            return frozenset()
        return Known(self.distinct, self.seen, self.rejected) if self.distinct.key is not None else self.seen

    @property
    def exhausted(self) -> bool:
        return self.config.unique and self._tree().exhausted

    def _step(self, loss: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = math.nan
        if self.config.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.config.grad_clip))
        self.optimizer.step()
        return grad_norm

    def _loss(
        self, proposals: Sequence[Proposal], advantage: torch.Tensor, log_prob: torch.Tensor, entropy: torch.Tensor
    ) -> torch.Tensor:
        weight = pg.importance_weights(
            log_prob,
            [p.log_prob for p in proposals],
            [p.policy_version != self.policy_version for p in proposals],
            self.config.max_importance,
        )
        return pg.reinforce_loss(log_prob, advantage, entropy, self.config.entropy_weight, weight)

    def _passes(self) -> int:
        return 1

    def _elite_loss(self) -> torch.Tensor | None:
        if not self.elite or self.config.elite_weight == 0:
            return None
        forced = torch.tensor([t for _, t in self.elite], dtype=torch.long)
        _, log_prob, _ = self.policy(len(self.elite), forced=forced)
        return pg.elite_loss(log_prob, self.config.elite_weight)

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        advantage, baseline, mean_reward = self.baseline.advantages(rewards, self.config.normalize_advantage)
        batch = [(float(r), p.tokens) for p, r in zip(proposals, rewards, strict=True)]
        self.elite = pg.update_elite(self.elite, batch, self.config.elite_size)
        forced = torch.tensor([p.tokens for p in proposals], dtype=torch.long)
        for _ in range(self._passes()):
            _, log_prob, entropy = self.policy(len(proposals), forced=forced)
            loss = self._loss(proposals, advantage, log_prob, entropy)
            elite_loss = self._elite_loss()
            grad_norm = self._step(loss if elite_loss is None else loss + elite_loss)
        self.policy_version += 1
        return UpdateStats(
            loss=float(loss.detach()),
            baseline=baseline,
            mean_reward=mean_reward,
            entropy=float(entropy.detach().mean()),
            policy_version=self.policy_version,
            n=len(proposals),
            extra={**({"grad_norm": grad_norm} if math.isfinite(grad_norm) else {}), **self.distinct.stats()},
        )

    def _core_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": dataclasses.asdict(self.config),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline.value,
            "policy_version": self.policy_version,
            "rng": self.generator.get_state(),
            "elite": [[r, list(t)] for r, t in self.elite],
            "seed": self.seed,
            "rejected": pack_tokens(sorted(self.rejected)),  # not the run's children: kept here
        }

    def state_dict(self) -> dict[str, Any]:
        return {**self._core_state(), "seen": pack_tokens(sorted(self.seen)), "distinct": self.distinct.state_dict()}

    def lean_state_dict(self) -> dict[str, Any]:
        # the sequences proposed are the run's children: `restore` takes them (and their identities) from the ledger
        lean = {"n_seen": len(self.seen), "distinct": self.distinct.state_dict(lean=True)}
        return {**self._core_state(), **lean}

    def restore(self, ledger: Ledger) -> None:
        if not self.config.unique:
            return
        self.seen = set(ledger.proposed)
        self._seen_tree = None
        if len(self.seen) != self._n_seen:
            raise ControllerError(
                f"{self.kind} checkpoint had proposed {self._n_seen} distinct sequences but the ledger holds "
                f"{len(self.seen)}; checkpoint and children disagree"
            )
        self.distinct.restore(self.seen, self.kind)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # settings added since the checkpoint was written take their defaults; the screen's settings, which
        # checkpoints of l2l 0.1 held here, now belong to the screen (`l2l.controllers.screen`)
        stored = {k: v for k, v in dict(state["config"]).items() if k not in SCREEN_SETTINGS}
        stored = {**dataclasses.asdict(self.config_type()), **stored}
        if stored != dataclasses.asdict(self.config):
            raise ControllerError(f"checkpoint config {state['config']} differs from this controller's {self.config}")
        self.policy.load_state_dict(state["policy"])
        # a copy: Adam would otherwise step the very moment tensors of the controller the state came from
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.baseline.value = state["baseline"]
        self.policy_version = int(state["policy_version"])
        self.generator.set_state(state["rng"])
        # a lean state (`lean_state_dict`) leaves the sequences proposed to `restore`
        self.seen = set(unpack_tokens(state["seen"])) if "seen" in state else set()
        self._n_seen = int(state.get("n_seen", len(self.seen)))
        self.rejected = set(unpack_tokens(state.get("rejected", [])))
        self.distinct.load_state_dict(state.get("distinct"))
        self._seen_tree = None
        self.elite = [(float(r), tuple(int(x) for x in t)) for r, t in state["elite"]]
        self.seed = int(state.get("seed", self.seed))


class PPOController(ReinforceController):
    """Clipped-ratio policy optimization on the same LSTM policy (NASNet's choice over REINFORCE).

    Each batch is used for ``epochs`` gradient steps; the ratio of the current to the sampling
    policy's probability is clipped to [1 - clip, 1 + clip], so stale or repeated steps cannot
    move the policy far from the one that wrote the batch."""

    kind = "ppo"
    config_type = PPOConfig

    def _passes(self) -> int:
        assert isinstance(self.config, PPOConfig)  # set by from_settings / __init__
        return self.config.epochs

    def _loss(
        self, proposals: Sequence[Proposal], advantage: torch.Tensor, log_prob: torch.Tensor, entropy: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(self.config, PPOConfig)
        c = self.config
        return pg.ppo_loss(log_prob, [p.log_prob for p in proposals], advantage, entropy, c.entropy_weight, c.clip)
