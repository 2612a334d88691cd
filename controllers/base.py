"""The `Controller` interface: propose token sequences, learn from their rewards, save and restore state."""

from __future__ import annotations

import io
import math
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from l2l.controllers.names import ControllerError as ControllerError  # its home before names.py; still imported
from l2l.search_spaces.api import Decision, token_sizes
from l2l.search_spaces.constraints import Constraints


@dataclass(frozen=True)
class Proposal:
    """One sampled candidate: its flat tokens, their log-probability and entropy, and the policy that wrote it."""

    tokens: tuple[int, ...]
    log_prob: float
    entropy: float
    policy_version: int


@dataclass(frozen=True)
class Ledger:
    """What a run's children table says a controller has been through, so a checkpoint need not copy it.

    ``proposed``: the token sequences the controller proposed, in proposal order; ``learned``: the
    (tokens, reward) pairs it updated on, in the order it learned them. A store rebuilds both from its
    children and updates; `Controller.load_checkpoint` hands them to `Controller.restore`.
    """

    proposed: Sequence[tuple[int, ...]] = ()
    learned: Sequence[tuple[tuple[int, ...], float]] = ()


@dataclass(frozen=True)
class UpdateStats:
    """What one controller update did, for the store and the progress display."""

    loss: float
    baseline: float | None
    mean_reward: float
    entropy: float
    policy_version: int
    n: int
    extra: Mapping[str, float] = field(default_factory=dict)


class Controller(ABC):
    """A search strategy seen only through decisions and rewards, never through a particular space."""

    kind: str = ""

    def __init__(self, decisions: Sequence[Decision], seed: int) -> None:
        self.decisions = list(decisions)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.policy_version = 0
        self.reward_transform = "reward"
        self.constraints: Constraints | None = None

    def constrain(self, constraints: Constraints | None) -> None:
        """Propose only the sequences ``constraints`` allow: a space's forbidden combinations are never
        proposed, and a canonical space's architectures each as one sequence. Set before the first proposal."""
        self.constraints = constraints

    def identify(self, identity: Callable[[Sequence[int]], Hashable] | None) -> None:
        """Propose no two sequences of one identity (`l2l.search_spaces.constraints.identity_of`): a strategy
        that never repeats (or, with an identity, random search and evolution) rejects a sampled sequence
        whose identity it proposed before (`l2l.controllers.unique.Distinct`). Set before the first proposal;
        a strategy keeping no identities ignores it."""
        del identity

    def plan(self, children: int) -> None:
        """Told by the search how many children the run will have in all, when it starts and again when it
        resumes. A strategy whose choices depend on the budget keeps it; the rest ignore it."""
        del children

    def note_proposed(self, proposals: Sequence[Proposal]) -> None:
        """Told by a resumed asynchronous search of the children it proposed in this controller's name after the
        checkpoint the controller was restored from (it runs or learns them again without asking for them), in
        proposal order. A strategy that counts its proposals counts these too; the rest ignore it."""
        del proposals

    def reward_of(self, metrics: Mapping[str, float | None]) -> float:
        """The scalar this controller maximizes for a child with these metrics (see `l2l.controllers.rewards`)."""
        from l2l.controllers.rewards import get_transform

        return float(get_transform(self.reward_transform)(metrics))

    @abstractmethod
    def propose(self, n: int) -> list[Proposal]:
        """Sample ``n`` candidates from the current policy."""

    @abstractmethod
    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        """Learn from the rewards of ``proposals`` (one reward each, already transformed)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this controller is, RNG included."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state made by `state_dict`."""

    def draw(self, n: int) -> list[tuple[int, ...]]:
        """``n`` sequences from this strategy's sampling distribution, committing it to nothing (not
        proposals): what trains shared weights between updates in a weight-sharing search. A strategy
        without a distribution of its own (random search, evolution, Optuna's) draws uniformly among the
        sequences the space allows."""
        from l2l.controllers.constrained import uniform_allowed

        constraints = self.constraints or Constraints(token_sizes(self.decisions))
        return uniform_allowed(constraints, n, self.generator)

    def draw_fair(self) -> list[tuple[int, ...]]:
        """A strictly fair group of sequences among those the space allows (`fair_allowed`: every value of every
        position equally often), committing this strategy to nothing: what trains shared weights under
        ``-W sampler=fair``, whatever the strategy."""
        from l2l.controllers.constrained import fair_allowed

        return fair_allowed(self.constraints or Constraints(token_sizes(self.decisions)), self.generator)

    # Screening (`l2l.controllers.screen`) picks among a strategy's candidates through these hooks. The
    # defaults suit a strategy whose proposals commit it to nothing (random search, evolution).

    def candidates(self, n: int) -> list[Proposal]:
        """``n`` sequences this strategy would propose now, not yet counted as proposed, for screening."""
        return self.propose(n)

    def adopt(self, picks: Sequence[tuple[tuple[int, ...], Proposal | None]]) -> list[Proposal]:
        """The screened picks as this strategy's proposals, now counted as proposed.

        A pick drawn by the screen rather than by this strategy comes with ``None`` and gets a proposal
        scored here; a strategy that never repeats leaves out the picks it proposed before."""
        return [p if p is not None else Proposal(t, 0.0, 0.0, self.policy_version) for t, p in picks]

    def release(self, proposals: Sequence[Proposal]) -> None:
        """Candidates that screening did not pick: a strategy that keeps state per proposal lets them go."""
        del proposals  # random search, evolution and the policy-gradient learners keep none

    def observe(self, tokens: Sequence[int], reward: float) -> None:
        """A reward for ``tokens`` that this strategy did not propose (a re-evaluation, `l2l.controllers.reeval`):
        a strategy with a model of the rewards (the screen's surrogate) learns from it; a policy does not."""
        del tokens, reward

    def proposed_before(self) -> Container[tuple[int, ...]]:
        """Sequences screening must not draw again: those already proposed, by a strategy that never repeats."""
        return frozenset()

    @property
    def exhausted(self) -> bool:
        """True once a strategy that never repeats has proposed every sequence of the space."""
        return False

    def to_bytes(self) -> bytes:
        """The state as bytes, for a checkpoint row in the store."""
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        return buf.getvalue()

    def load_bytes(self, data: bytes) -> None:
        """Restore a state saved with `to_bytes`."""
        self.load_state_dict(self._read(data))

    def _read(self, data: bytes) -> dict[str, Any]:
        try:
            state = torch.load(io.BytesIO(data), weights_only=True)
        except Exception as exc:  # torch raises many types on a corrupt or foreign checkpoint, in many lines
            lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
            said = next((line for line in lines if "Unsupported global" in line), lines[0] if lines else str(exc))
            said = said.removeprefix("WeightsUnpickler error: ").split(" was not an allowed global")[0]
            raise ControllerError(f"cannot read {self.kind} controller checkpoint: {said}") from exc
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            kind = state.get("kind") if isinstance(state, dict) else None
            raise ControllerError(f"checkpoint is of a {kind!r} controller, not {self.kind!r}")
        return state

    # A run's checkpoint leaves out what its children table holds (`Ledger`): it stays the same size
    # however long the run, and one is written after every update. The exception: sequences a strategy drew
    # and rejected for an identity proposed before (REINFORCE's `rejected`), which are no children; they
    # grow with the rejections (about 2 per child in an optimizer search).

    def lean_state_dict(self) -> dict[str, Any]:
        """`state_dict` without what `restore` rebuilds from a `Ledger` (the same for a strategy keeping none)."""
        return self.state_dict()

    def restore(self, ledger: Ledger) -> None:
        """Rebuild, after `load_state_dict` of a `lean_state_dict`, what the lean state left out."""
        del ledger  # a strategy whose state is all in its lean state has nothing to rebuild

    def checkpoint_bytes(self) -> bytes:
        """The lean state as bytes, for the store's checkpoint row (`load_checkpoint` reads it back). The first
        one is read back at once: a plugin's state that cannot be restored fails here, naming the strategy,
        not at ``--resume`` with every checkpoint of the run unreadable."""
        buf = io.BytesIO()
        try:
            torch.save({**self.lean_state_dict(), "lean": True}, buf)
        except Exception as exc:  # an object pickle cannot save: the plugin's state, named
            raise ControllerError(f"strategy {named(self)}: its state_dict() cannot be saved: {exc}") from exc
        data = buf.getvalue()
        if not getattr(self, "_checkpoint_checked", False):
            try:
                self._read(data)
            except ControllerError as exc:
                raise ControllerError(
                    f"strategy {named(self)}: its checkpoint cannot be read back ({exc}); state_dict() "
                    f"must give a dict with 'kind': {innermost(self).kind!r} holding tensors, numbers, strings, lists "
                    "and dicts only (it is read with torch.load(weights_only=True); docs/controllers.md)"
                ) from None
            self._checkpoint_checked = True
        return data

    def load_checkpoint(self, data: bytes, ledger: Ledger) -> None:
        """Restore a checkpoint of `checkpoint_bytes` (or of `to_bytes`, as older stores hold) and ``ledger``."""
        state = self._read(data)
        self.load_state_dict(state)
        if state.get("lean"):
            self.restore(ledger)

    def _gradient_free_stats(
        self, rewards: Sequence[float], entropy: float = 0.0, extra: Mapping[str, float] | None = None
    ) -> UpdateStats:
        """Statistics of an update by a strategy without a policy loss (random, evolution, Optuna's)."""
        return UpdateStats(
            loss=0.0,
            baseline=None,
            mean_reward=sum(rewards) / len(rewards),
            entropy=entropy,
            policy_version=self.policy_version,
            n=len(rewards),
            extra=dict(extra or {}),
        )

    def _check_update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> None:
        if len(proposals) != len(rewards):
            raise ControllerError(f"update got {len(proposals)} proposals but {len(rewards)} rewards")
        if not proposals:
            raise ControllerError("update needs at least one proposal")
        if not all(math.isfinite(float(r)) for r in rewards):
            raise ControllerError(f"rewards must be finite, got {[float(r) for r in rewards]}")
        sizes = token_sizes(self.decisions)
        for p in proposals:
            if len(p.tokens) != len(sizes):
                raise ControllerError(
                    f"proposal {list(p.tokens)} has {len(p.tokens)} tokens; the decisions take {len(sizes)}"
                )
            for i, (t, k) in enumerate(zip(p.tokens, sizes, strict=True)):
                if not 0 <= t < k:
                    raise ControllerError(f"proposal {list(p.tokens)}: token {t} at position {i} is not in 0..{k - 1}")


def pack_tokens(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """[n, length] int64 tensor of token sequences (shape [0] when there are none), for checkpoints:
    torch.save pickles a list of lists one object at a time, which made checkpoints the slowest part of
    an update once a run had a few hundred children."""
    return torch.tensor([list(r) for r in rows], dtype=torch.long) if rows else torch.zeros(0, dtype=torch.long)


def unpack_tokens(table: Any) -> list[tuple[int, ...]]:
    """Token sequences from a `pack_tokens` tensor or, in older checkpoints, a list of lists."""
    rows = table.tolist() if isinstance(table, torch.Tensor) else table
    return [tuple(int(x) for x in row) for row in rows]


def innermost(controller: Controller) -> Controller:
    """The strategy a wrapper (``+screen``, ``+reeval``) wraps, through every layer: what proposes and keeps state."""
    while isinstance(getattr(controller, "base", None), Controller):
        controller = controller.base  # type: ignore[attr-defined]
    return controller


def named(controller: Controller) -> str:
    """A strategy as an error names it: the class whose code made the mistake, with the wrappers it runs in
    (``Sweep (as sweep+screen)``)."""
    inner = innermost(controller)
    return type(inner).__name__ + (f" (as {controller.kind})" if inner is not controller else "")


def checked_proposals(controller: Controller, proposals: Any, n: int) -> list[Proposal]:
    """``controller.propose(n)``'s answer as a list, refused with the strategy named when it is not ``n``
    `Proposal`s (a plugin strategy's mistake, caught where it is made)."""
    out = list(proposals) if isinstance(proposals, list | tuple) else None
    if out is None or len(out) != n or not all(isinstance(p, Proposal) for p in out):
        kinds = ", ".join(sorted({type(p).__name__ for p in out})) if out else ""
        got = type(proposals).__name__ if out is None else f"{len(out)} item(s){' of ' + kinds if kinds else ''}"
        raise ControllerError(
            f"strategy {named(controller)}: propose({n}) returned {got}; expected a list of {n} Proposal"
        )
    for p in out:  # a NaN log-probability reached the store as NULL and the learning as NaN
        for name in ("log_prob", "entropy"):
            value = getattr(p, name)
            if not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ControllerError(
                    f"strategy {named(controller)}: proposed {list(p.tokens)} with {name} {value!r}; "
                    "expected a finite number"
                )
    decisions = getattr(controller, "decisions", None)
    sizes = token_sizes(decisions) if isinstance(decisions, Sequence) else None
    for p in out:  # tokens the space cannot read are the strategy's mistake: said of it, not of the space
        if sizes is not None and (
            len(p.tokens) != len(sizes) or not all(0 <= int(t) < k for t, k in zip(p.tokens, sizes, strict=True))
        ):
            raise ControllerError(
                f"strategy {named(controller)}: proposed {list(p.tokens)}; the space takes {len(sizes)} "
                f"tokens, each below {sizes}"
            )
    constraints: Constraints | None = getattr(controller, "constraints", None)
    if constraints is not None:
        for p in out:
            tokens = tuple(int(t) for t in p.tokens)
            in_range = len(tokens) == len(constraints.sizes) and all(
                0 <= t < size for t, size in zip(tokens, constraints.sizes, strict=True)
            )  # (out of range: the space names it when it decodes them, where the strategy's decisions are unknown)
            if in_range and not constraints.valid(constraints.canonical(tokens)):  # its architecture is forbidden
                raise ControllerError(
                    f"strategy {named(controller)}: proposed {list(tokens)}, a combination the space "
                    "forbids; a strategy proposes only sequences its constraints allow (self.constraints.valid, "
                    "docs/controllers.md)"
                )
    return out


def noncanonical(controller: Controller, proposals: Sequence[Proposal]) -> str | None:
    """What to tell the user, once, when a strategy proposes a sequence the space's canonical form writes
    otherwise (a plugin's that ignores it), where that form is listed (`Constraints.enumerated`: strategies
    draw among its sequences): its children are one architecture trained apart. None when none is."""
    constraints: Constraints | None = getattr(controller, "constraints", None)
    if constraints is None or not constraints.enumerated:  # a canonical form too large to list: identities decide
        return None
    for p in proposals:
        canonical = constraints.canonical(p.tokens)
        if canonical != tuple(int(t) for t in p.tokens):
            return (
                f"strategy {named(controller)} proposed {list(p.tokens)}, which the space writes {list(canonical)}: "
                "sequences of one architecture are trained apart and ranked as one (a strategy proposes canonical "
                "sequences, self.constraints.canonical; docs/controllers.md)"
            )
    return None


def checked_stats(controller: Controller, stats: Any) -> UpdateStats:
    """``controller.update``'s answer, refused with the strategy named when it is not `UpdateStats`."""
    if not isinstance(stats, UpdateStats):
        raise ControllerError(f"strategy {named(controller)}: update returned {type(stats).__name__}, not UpdateStats")
    return stats
