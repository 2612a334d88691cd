"""The LSTM controller as an Optuna sampler: `optuna.create_study(sampler=ControllerSampler())`.

Each trial is one autoregressive sequence: every `suggest_*` call is one controller step with a
head for that parameter. Categorical parameters choose among their choices; integers among their
values (or quantile bins when there are many); floats among ``bins`` intervals (log-spaced for log
distributions, on the grid for stepped ones) and then uniformly inside the chosen interval.
Conditional and dynamic parameters work because heads are created when a parameter first appears.
After every ``batch`` finished trials the policy takes a REINFORCE step with an EMA baseline and
normalized advantages, plus the elite term: the math of `ReinforceController`, from one place
(`l2l.controllers.policy_gradient`). Failed, pruned and NaN trials are left out of learning, as
Optuna's own samplers leave them out of their models.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from torch import nn
from torch.nn import functional as F

from l2l.controllers import policy_gradient as pg

MAX_INT_VALUES = 32


@dataclass
class _Trace:
    """The steps one trial took: (head key, chosen index) pairs and the LSTM state after the last."""

    steps: list[tuple[str, int]] = field(default_factory=list)
    state: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    last: torch.Tensor | None = None


class _Policy(nn.Module):
    """LSTM cells plus one embedding and one softmax head per (parameter, distribution) key."""

    def __init__(self, hidden: int, layers: int, init_range: float) -> None:
        super().__init__()
        self.hidden, self.init_range = hidden, init_range
        self.start = nn.Parameter(torch.empty(1, hidden).uniform_(-init_range, init_range))
        self.cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))
        for p in self.cells.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        self.heads = nn.ModuleDict()
        self.embeddings = nn.ModuleDict()

    def ensure(self, key: str, n: int, generator: torch.Generator) -> list[nn.Parameter]:
        """Create the head of ``key`` with ``n`` choices if needed, its weights drawn from ``generator`` (the
        sampler's seed, not the global generator: the user's torch random state neither decides nor moves);
        returns new parameters."""
        if key in self.heads:
            return []
        with torch.random.fork_rng(devices=[]):  # the modules' own default initialisation, overwritten below
            head, emb = nn.Linear(self.hidden, n), nn.Embedding(n, self.hidden)
        for p in [*head.parameters(), *emb.parameters()]:
            nn.init.uniform_(p, -self.init_range, self.init_range, generator=generator)
        self.heads[key], self.embeddings[key] = head, emb
        return [*head.parameters(), *emb.parameters()]

    def step(
        self, x: torch.Tensor, state: list[tuple[torch.Tensor, torch.Tensor]] | None
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        new_state = []
        h = x
        for i, cell in enumerate(self.cells):
            hc = cell(h, None if state is None else state[i])
            new_state.append(hc)
            h = hc[0]
        return h, new_state

    def logits(self, key: str, h: torch.Tensor, tanh_constant: float | None) -> torch.Tensor:
        out = self.heads[key](h)
        return tanh_constant * torch.tanh(out) if tanh_constant else out


def _key(name: str, distribution: BaseDistribution) -> str:
    return f"{name}|{distribution!r}".replace(".", "_")


class ControllerSampler(BaseSampler):
    """An Optuna sampler driven by the LSTM controller trained with REINFORCE (single objective)."""

    def __init__(
        self,
        seed: int | None = None,
        batch: int = 4,
        bins: int = 16,
        hidden_size: int = 64,
        lstm_layers: int = 1,
        lr: float = 0.01,
        init_range: float = 0.1,
        tanh_constant: float | None = 2.5,
        baseline_decay: float = 0.8,
        elite_size: int = 3,
    ) -> None:
        whole = {"batch": batch, "bins": bins, "hidden_size": hidden_size, "lstm_layers": lstm_layers}
        real = {"lr": lr, "init_range": init_range, "baseline_decay": baseline_decay}
        for key, value in {**whole, "elite_size": elite_size, **real}.items():
            kind = numbers.Integral if key in whole or key == "elite_size" else numbers.Real
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "a whole number" if kind is numbers.Integral else "a number"
                raise TypeError(f"ControllerSampler: {key} must be {what}, got {value!r}")
        if batch < 1 or bins < 2:
            raise ValueError(f"batch must be >= 1 and bins >= 2, got {batch}, {bins}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.batch, self.bins, self.tanh_constant = batch, bins, tanh_constant
        self.elite_size = elite_size
        self.generator = torch.Generator().manual_seed(seed if seed is not None else int(np.random.randint(2**31)))
        self.np_rng = np.random.RandomState(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed if seed is not None else 0)
            self.policy = _Policy(hidden_size, lstm_layers, init_range)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.traces: dict[int, _Trace] = {}
        self.finished: list[tuple[list[tuple[str, int]], float]] = []
        self.elite: list[tuple[float, tuple[tuple[str, int], ...]]] = []
        self.baseline = pg.EMABaseline(baseline_decay)
        self.updates = 0
        self._lock = threading.Lock()

    # BaseSampler API ----------------------------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_single_objective(study)
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._check_single_objective(study)
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self._check_single_objective(study)
        d = param_distribution
        if isinstance(d, CategoricalDistribution) and len(d.choices) == 1:
            return d.choices[0]
        if isinstance(d, IntDistribution | FloatDistribution) and d.single():
            return d.to_external_repr(d.low)
        values = self._grid(d)
        key = _key(param_name, d)
        with self._lock:
            new = self.policy.ensure(key, len(values) if values is not None else self.bins, self.generator)
            if new:
                self.optimizer.add_param_group({"params": new})
            trace = self.traces.setdefault(trial._trial_id, _Trace())
            x = self.policy.start if trace.last is None else trace.last
            with torch.no_grad():
                h, state = self.policy.step(x, trace.state)
                probs = F.softmax(self.policy.logits(key, h, self.tanh_constant), dim=-1)
                index = int(torch.multinomial(probs, 1, generator=self.generator))
                trace.last = self.policy.embeddings[key](torch.tensor([index]))
            trace.state = state
            trace.steps.append((key, index))
        if values is not None:
            return values[index]
        assert isinstance(d, FloatDistribution)  # _grid returns None only for floats
        return self._float_in_bin(d, index)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        with self._lock:
            trace = self.traces.pop(trial._trial_id, None)
            if trace is None or not trace.steps:
                return
            if state != TrialState.COMPLETE or values is None or not math.isfinite(values[0]):
                return
            sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
            self.finished.append((trace.steps, sign * float(values[0])))
            if len(self.finished) >= self.batch:
                self._update(self.finished)
                self.finished = []

    # internals ----------------------------------------------------------------------------------

    @staticmethod
    def _check_single_objective(study: Study) -> None:
        if len(study.directions) > 1:
            raise ValueError("ControllerSampler supports single-objective studies only")

    def _grid(self, d: BaseDistribution) -> list[Any] | None:
        """Every value the controller may pick, or None for a float sampled inside bins."""
        if isinstance(d, CategoricalDistribution):
            return list(d.choices)
        if isinstance(d, IntDistribution):
            count = (d.high - d.low) // d.step + 1
            if count <= MAX_INT_VALUES and not d.log:
                return [d.low + i * d.step for i in range(count)]
            edges = np.geomspace(d.low, d.high, MAX_INT_VALUES) if d.log else np.linspace(d.low, d.high, MAX_INT_VALUES)
            grid = sorted({int(d.low + round((e - d.low) / d.step) * d.step) for e in edges})
            return [min(max(v, d.low), d.high) for v in grid]
        if not isinstance(d, FloatDistribution):
            raise ValueError(f"ControllerSampler cannot sample {d!r}")
        if d.step is not None:
            count = round((d.high - d.low) / d.step) + 1
            if count <= 4 * self.bins:
                return [float(min(d.low + i * d.step, d.high)) for i in range(count)]
        return None

    def _float_in_bin(self, d: FloatDistribution, index: int) -> float:
        if d.log:
            lo, hi = math.log(d.low), math.log(d.high)
            a, b = lo + (hi - lo) * index / self.bins, lo + (hi - lo) * (index + 1) / self.bins
            value = math.exp(self.np_rng.uniform(a, b))
        else:
            a = d.low + (d.high - d.low) * index / self.bins
            b = d.low + (d.high - d.low) * (index + 1) / self.bins
            value = float(self.np_rng.uniform(a, b))
        if d.step is not None:
            value = d.low + round((value - d.low) / d.step) * d.step
        return float(min(max(value, d.low), d.high))

    def _log_prob(self, steps: list[tuple[str, int]]) -> torch.Tensor:
        x: torch.Tensor = self.policy.start
        state = None
        total = torch.zeros(())
        for key, index in steps:
            h, state = self.policy.step(x, state)
            logp = F.log_softmax(self.policy.logits(key, h, self.tanh_constant), dim=-1)
            total = total + logp[0, index]
            x = self.policy.embeddings[key](torch.tensor([index]))
        return total

    def _update(self, batch: list[tuple[list[tuple[str, int]], float]]) -> None:
        # objectives come in any unit: advantages are normalized by their spread
        advantage, _, _ = self.baseline.advantages([r for _, r in batch], normalize=True)
        log_probs = torch.stack([self._log_prob(steps) for steps, _ in batch])
        loss = pg.reinforce_loss(log_probs, advantage, torch.zeros(1), 0.0, torch.ones_like(log_probs))
        if self.elite_size:
            scored = [(r, tuple(steps)) for steps, r in batch]
            self.elite = pg.update_elite(self.elite, scored, self.elite_size)
            loss = loss + pg.elite_loss(torch.stack([self._log_prob(list(steps)) for _, steps in self.elite]), 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), 5.0)
        self.optimizer.step()
        self.updates += 1
