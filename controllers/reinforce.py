"""REINFORCE on the LSTM policy (Zoph & Le), with the settings of the papers as presets."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from l2l.controllers.base import Controller, ControllerError, Proposal, UpdateStats
from l2l.controllers.policy import LSTMPolicy
from l2l.controllers.surrogate import HammingGP, RidgeEnsemble
from l2l.controllers.unique import SeenTree
from l2l.search_spaces.api import Decision, token_sizes

SCREEN_MODELS = ("gp", "ridge")


@dataclass(frozen=True)
class ReinforceConfig:
    """Settings of the REINFORCE controller; ``PRESETS`` holds the papers' values.

    The defaults are tuned for small budgets (hundreds of children, batches of 4 to 10): a larger
    learning rate than the papers', a mild tanh squashing of the logits so no choice is abandoned
    too early, a fast-moving baseline, sampling without repeats (``unique``), and a
    maximum-likelihood term on the ``elite_size`` best sequences found so far, weighted by
    ``elite_weight`` (priority-queue training, Abolafia et al. 2018), which speeds up learning from
    the few good children a small budget finds.

    With ``screen`` > 1 each proposal is the best of ``screen`` candidates sampled from the policy,
    as scored by a bootstrap ensemble of ``screen_members`` ridge regressions of the rewards seen so
    far (`l2l.controllers.surrogate`), once ``screen_warmup`` rewards have arrived; 0 or 1 turns this off.
    ``screen_uniform`` more candidates per proposal are drawn uniformly from the space's unproposed
    sequences, so the model can also pick a cell in a region the policy has stopped sampling.
    ``screen_local`` adds every unproposed sequence one token away from each of that many best
    sequences so far: the neighbourhood of the incumbents, where evolution and TPE search.
    ``screen_prior`` is the scale of each member's random prior weights (`RidgeEnsemble`), which keep
    values the history has barely tried from being rated average by every member.
    ``screen_model`` picks the surrogate: ``ridge`` (the ensemble above) or ``gp``, a Gaussian process
    whose kernel (`HammingGP`) is ``screen_mix`` additive and the rest a product over positions, so it
    also learns which values go well together; its posterior draws replace the bootstrap members.
    With ``gp`` the ridge ensemble still screens until ``screen_gp_from`` rewards have arrived: with
    few data the additive model generalizes better, with more the interactions decide.
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

    def __post_init__(self) -> None:
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
        if self.screen < 0 or self.screen_members < 1 or self.screen_warmup < 1 or self.screen_ridge <= 0:
            raise ControllerError(
                "screen must be >= 0, screen_members and screen_warmup >= 1 and screen_ridge > 0; got "
                f"{self.screen}, {self.screen_members}, {self.screen_warmup}, {self.screen_ridge}"
            )
        if self.screen_prior < 0:
            raise ControllerError(f"screen_prior must be >= 0, got {self.screen_prior}")
        if self.screen_local < 0:
            raise ControllerError(f"screen_local must be >= 0, got {self.screen_local}")
        if self.screen_uniform < 0:
            raise ControllerError(f"screen_uniform must be >= 0, got {self.screen_uniform}")
        if self.screen_model not in SCREEN_MODELS:
            raise ControllerError(f"unknown screen_model {self.screen_model!r}; known: {', '.join(SCREEN_MODELS)}")
        if not 0.0 <= self.screen_mix <= 1.0:
            raise ControllerError(f"screen_mix must be in [0, 1], got {self.screen_mix}")
        if self.screen_gp_from < 0:
            raise ControllerError(f"screen_gp_from must be >= 0, got {self.screen_gp_from}")


@dataclass(frozen=True)
class PPOConfig(ReinforceConfig):
    """REINFORCE's settings plus PPO's: the ratio clip and the optimization epochs per batch (NASNet)."""

    clip: float = 0.2
    epochs: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
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
        "screen": 0,
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
        "screen": 0,
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
    if unknown:
        label = "ppo" if issubclass(cls, PPOConfig) else "reinforce"
        raise ControllerError(f"unknown {label} setting(s) {unknown}; known: preset, {', '.join(sorted(known))}")
    base.update(settings)
    return cls(**base)


class ReinforceController(Controller):
    """Policy gradient with an exponential-moving-average baseline and an optional entropy bonus.

    With ``unique`` the controller never proposes a sequence it proposed before: it samples from
    the policy restricted to the unproposed sequences (see `SeenTree`), and repeats only once the
    whole space has been proposed, so no budget is spent on a candidate twice.
    """

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
        self.baseline: float | None = None
        self.seen: set[tuple[int, ...]] = set()
        self._seen_tree: SeenTree | None = None
        self.elite: list[tuple[float, tuple[int, ...]]] = []
        # every (tokens, reward) learned from, for the surrogate that screens proposals
        self.history: list[tuple[tuple[int, ...], float]] = []
        self._surrogate: RidgeEnsemble | HammingGP | None = None
        self._surrogate_size = -1  # len(history) when the surrogate was fitted
        self._member = 0

    @classmethod
    def from_settings(
        cls, decisions: Sequence[Decision], seed: int, settings: Mapping[str, Any]
    ) -> ReinforceController:
        """Build from user settings (see `build_config`)."""
        return cls(decisions, seed, build_config(settings, cls.config_type))

    def _sample(self, n: int, tree: SeenTree | None = None) -> list[Proposal]:
        with torch.no_grad():
            allowed = tree.allowed if tree is not None else None
            tokens, log_prob, entropy = self.policy(n, generator=self.generator, allowed=allowed)
        return [
            Proposal(tuple(int(t) for t in row), float(lp), float(ent), self.policy_version)
            for row, lp, ent in zip(tokens.tolist(), log_prob, entropy, strict=True)
        ]

    def _tree(self) -> SeenTree:
        if self._seen_tree is None:
            self._seen_tree = SeenTree(token_sizes(self.decisions), self.seen)
        return self._seen_tree

    def _screening(self) -> bool:
        return self.config.screen > 1 and len(self.history) >= self.config.screen_warmup

    def _fitted_surrogate(self) -> RidgeEnsemble | HammingGP:
        """The surrogate fitted to the whole history, refitted only when the history has grown.

        Its bootstrap (ridge) or posterior (GP) draws come from a generator seeded by the run's seed and
        the history's length, so a resumed run refits exactly the model an uninterrupted one had."""
        if self._surrogate is None or self._surrogate_size != len(self.history):
            c = self.config
            model: RidgeEnsemble | HammingGP
            if c.screen_model == "gp" and len(self.history) >= c.screen_gp_from:
                model = HammingGP(token_sizes(self.decisions), c.screen_members, c.screen_mix)
            else:
                model = RidgeEnsemble(token_sizes(self.decisions), c.screen_members, c.screen_ridge, c.screen_prior)
            draws = torch.Generator().manual_seed(self.seed * 1_000_003 + len(self.history))
            model.fit([t for t, _ in self.history], [r for _, r in self.history], draws)
            self._surrogate, self._surrogate_size, self._member = model, len(self.history), 0
        return self._surrogate

    def _uniform(self, n: int, exclude: Mapping[tuple[int, ...], Any], unique: bool) -> list[tuple[int, ...]]:
        """Up to ``n`` sequences drawn uniformly from the whole space, without those in ``exclude`` and,
        if ``unique``, without the proposed ones. Every token sequence is a valid candidate: each position's
        values are those the policy can sample there."""
        if n < 1:
            return []
        columns = [torch.randint(size, (n,), generator=self.generator) for size in token_sizes(self.decisions)]
        drawn = dict.fromkeys(tuple(row) for row in torch.stack(columns, dim=1).tolist())
        return [t for t in drawn if t not in exclude and not (unique and t in self.seen)]

    def _neighbours(self, exclude: Mapping[tuple[int, ...], Any], unique: bool) -> list[tuple[int, ...]]:
        """The sequences one token away from each of the ``screen_local`` best sequences learned from,
        without those in ``exclude`` and, if ``unique``, without the proposed ones."""
        k = self.config.screen_local
        if k < 1 or not self.history:
            return []
        ranked = sorted(self.history, key=lambda tr: tr[1], reverse=True)
        best = list(dict.fromkeys(t for t, _ in ranked))[:k]
        found: dict[tuple[int, ...], None] = {}
        for tokens in best:
            for i, size in enumerate(token_sizes(self.decisions)):
                for value in range(size):
                    if value != tokens[i]:
                        found[(*tokens[:i], value, *tokens[i + 1 :])] = None
        return [t for t in found if t not in exclude and not (unique and t in self.seen)]

    def _screened(self, n: int, tree: SeenTree | None) -> list[Proposal]:
        """``n`` distinct proposals, each the best by one surrogate member (a bootstrap fit or a posterior
        draw) of ``screen`` policy samples, ``screen_uniform`` uniform draws and the incumbents'
        neighbours (``screen_local``)."""
        pool: dict[tuple[int, ...], Proposal | None] = {}
        for p in self._sample(n * self.config.screen, tree):
            pool.setdefault(p.tokens, p)
        unique = tree is not None
        for t in self._uniform(n * self.config.screen_uniform, pool, unique) + self._neighbours(pool, unique):
            pool[t] = None  # scored by the policy below, if chosen
        tokens = list(pool)
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
        return self._with_log_probs([(tokens[i], pool[tokens[i]]) for i in picked])

    def _with_log_probs(self, chosen: list[tuple[tuple[int, ...], Proposal | None]]) -> list[Proposal]:
        """Proposals for the chosen sequences; the uniform draws get the current policy's log-prob and
        entropy (one scoring pass), as if the policy had sampled them: what the gradient and PPO's ratio use."""
        drawn = [t for t, p in chosen if p is None]
        scored: dict[tuple[int, ...], Proposal] = {}
        if drawn:
            with torch.no_grad():
                _, log_prob, entropy = self.policy(len(drawn), forced=torch.tensor(drawn, dtype=torch.long))
            for t, lp, ent in zip(drawn, log_prob.tolist(), entropy.tolist(), strict=True):
                scored[t] = Proposal(t, lp, ent, self.policy_version)
        return [p if p is not None else scored[t] for t, p in chosen]

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        if not self.config.unique:
            return self._screened(n, None) if self._screening() else self._sample(n)
        tree = self._tree()
        chosen: list[Proposal] = []
        # Each pass samples among the unproposed sequences only; rows of one pass may still pick the
        # same sequence, so at least one new sequence is kept per pass until the space runs out.
        while len(chosen) < n and not tree.exhausted:
            need = n - len(chosen)
            for p in self._screened(need, tree) if self._screening() else self._sample(need, tree):
                if tree.add(p.tokens):
                    self.seen.add(p.tokens)
                    chosen.append(p)
        if len(chosen) < n:  # the whole space has been proposed: repeats are all that is left
            chosen.extend(self._sample(n - len(chosen)))
        return chosen

    def _advantages(self, rewards: Sequence[float]) -> tuple[torch.Tensor, float, float]:
        r = torch.tensor([float(x) for x in rewards], dtype=torch.float32)
        if not torch.isfinite(r).all():
            raise ControllerError(f"rewards must be finite, got {list(rewards)}")
        mean_reward = float(r.mean())
        baseline = mean_reward if self.baseline is None else self.baseline
        advantage = r - baseline
        if self.config.normalize_advantage and len(r) > 1:
            advantage = advantage / (advantage.std() + 1e-8)
        decay = self.config.baseline_decay
        self.baseline = decay * baseline + (1.0 - decay) * mean_reward
        return advantage, baseline, mean_reward

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
        weight = self._staleness_weights(proposals, log_prob)
        return -(weight * advantage * log_prob).mean() - self.config.entropy_weight * entropy.mean()

    def _staleness_weights(self, proposals: Sequence[Proposal], log_prob: torch.Tensor) -> torch.Tensor:
        """Importance ratios pi_now / pi_sampled for children sampled from an older policy (asynchronous
        workers), truncated at ``max_importance`` as in IMPALA's V-trace; 1 for fresh children."""
        stale = torch.tensor([p.policy_version != self.policy_version for p in proposals])
        if not bool(stale.any()):
            return torch.ones_like(log_prob)
        old = torch.tensor([p.log_prob for p in proposals], dtype=log_prob.dtype)
        ratio = torch.exp(log_prob.detach() - old).clamp(max=self.config.max_importance)
        return torch.where(stale, ratio, torch.ones_like(ratio))

    def _passes(self) -> int:
        return 1

    def _remember_elite(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> None:
        if self.config.elite_size == 0:
            return
        best = dict((tokens, r) for r, tokens in self.elite)
        for p, r in zip(proposals, rewards, strict=True):
            best[p.tokens] = max(float(r), best.get(p.tokens, float("-inf")))
        ranked = sorted(((r, t) for t, r in best.items()), key=lambda rt: (-rt[0], rt[1]))
        self.elite = ranked[: self.config.elite_size]

    def _elite_loss(self) -> torch.Tensor | None:
        if not self.elite or self.config.elite_weight == 0:
            return None
        forced = torch.tensor([t for _, t in self.elite], dtype=torch.long)
        _, log_prob, _ = self.policy(len(self.elite), forced=forced)
        return -self.config.elite_weight * log_prob.mean()

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self._check_update(proposals, rewards)
        advantage, baseline, mean_reward = self._advantages(rewards)
        self._remember_elite(proposals, rewards)
        self.history.extend((p.tokens, float(r)) for p, r in zip(proposals, rewards, strict=True))
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
            # token tables as tensors: torch.save pickles a list of lists one object at a time, which
            # made the checkpoint the slowest part of an update once a run had a few hundred children
            "seen": _token_table(sorted(self.seen)),
            "elite": [[r, list(t)] for r, t in self.elite],
            "history_tokens": _token_table([t for t, _ in self.history]),
            "history_rewards": torch.tensor([r for _, r in self.history], dtype=torch.float64),
            "seed": self.seed,  # seeds the surrogate's bootstrap draws
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # settings added since the checkpoint was written take their defaults
        stored = {**dataclasses.asdict(self.config_type()), **dict(state["config"])}
        if stored != dataclasses.asdict(self.config):
            raise ControllerError(f"checkpoint config {state['config']} differs from this controller's {self.config}")
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
        self.policy_version = int(state["policy_version"])
        self.generator.set_state(state["rng"])
        self.seen = {tuple(t) for t in _rows(state["seen"])}
        self._seen_tree = None
        self.elite = [(float(r), tuple(int(x) for x in t)) for r, t in state["elite"]]
        # checkpoints written before the surrogate existed hold no history: screening starts afresh
        if "history_tokens" in state:
            rewards = [float(r) for r in state["history_rewards"].tolist()]
            self.history = [(tuple(t), r) for t, r in zip(_rows(state["history_tokens"]), rewards, strict=True)]
        else:  # checkpoints written before the token tables were tensors
            self.history = [(tuple(int(x) for x in t), float(r)) for r, t in state.get("history", [])]
        self._surrogate, self._surrogate_size, self._member = None, -1, 0
        self.seed = int(state.get("seed", self.seed))


def _token_table(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """[n, length] int64 tensor of token sequences (shape [0] when there are none)."""
    return torch.tensor([list(r) for r in rows], dtype=torch.long) if rows else torch.zeros(0, dtype=torch.long)


def _rows(table: Any) -> list[tuple[int, ...]]:
    """Token sequences from a `_token_table` tensor or, in older checkpoints, a list of lists."""
    rows = table.tolist() if isinstance(table, torch.Tensor) else table
    return [tuple(int(x) for x in row) for row in rows]


class PPOController(ReinforceController):
    """Clipped-ratio policy optimization on the same LSTM policy (NASNet's choice over REINFORCE).

    Each batch is used for ``epochs`` gradient steps; the ratio of the current to the sampling
    policy's probability is clipped to [1 - clip, 1 + clip], so stale or repeated steps cannot
    move the policy far from the one that wrote the batch.
    """

    kind = "ppo"
    config_type = PPOConfig

    def _passes(self) -> int:
        assert isinstance(self.config, PPOConfig)  # set by from_settings / __init__
        return self.config.epochs

    def _loss(
        self, proposals: Sequence[Proposal], advantage: torch.Tensor, log_prob: torch.Tensor, entropy: torch.Tensor
    ) -> torch.Tensor:
        assert isinstance(self.config, PPOConfig)
        old = torch.tensor([p.log_prob for p in proposals], dtype=log_prob.dtype)
        ratio = torch.exp(log_prob - old)
        clipped = torch.clamp(ratio, 1.0 - self.config.clip, 1.0 + self.config.clip)
        surrogate = torch.minimum(ratio * advantage, clipped * advantage)
        return -surrogate.mean() - self.config.entropy_weight * entropy.mean()
