"""A prefix tree of the token sequences already proposed, for sampling without repeats.

The policy samples position by position; at each position the tree says which values still lead
to an unproposed sequence, and the policy samples among those only. Sampling therefore costs one
pass of the policy however concentrated it has become, instead of resampling until something new
turns up. Each position has a fixed number of values (a categorical decision's choices, or 2 for
one bit of an anchor decision), so a subtree is exhausted when it holds as many sequences as the
product of the sizes below it.

Token sequences that differ can still be one candidate (`SearchSpace.identity`: update rules computing the
same update). `Distinct` keeps the identities proposed; a sampled sequence whose identity was proposed
before is rejected after sampling and another is drawn, in a bounded number of draws.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Container, Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch

from l2l.controllers.base import Controller, ControllerError, Ledger, Proposal
from l2l.search_spaces.api import Decision, token_sizes
from l2l.search_spaces.constraints import Constraints


class _Node:
    __slots__ = ("children", "count")

    def __init__(self) -> None:
        self.children: dict[int, _Node] = {}
        self.count = 0


class SeenTree:
    """Counts, for every prefix, how many distinct proposed sequences start with it."""

    def __init__(
        self, sizes: Sequence[int], sequences: Iterable[Sequence[int]] = (), constraints: Constraints | None = None
    ) -> None:
        if not sizes or any(s < 1 for s in sizes):
            raise ControllerError(f"position sizes must be >= 1, got {list(sizes)}")
        self.sizes = list(sizes)
        # capacity[i]: the number of distinct sequences below a node at depth i; with constraints, the
        # allowed ones, which differ prefix by prefix (`Constraints.branch_counts`)
        self.capacity = [math.prod(self.sizes[i:]) for i in range(len(self.sizes) + 1)]
        self.constraints = constraints
        self.total = constraints.count() if constraints is not None else self.capacity[0]
        self.root = _Node()
        for seq in sequences:
            self.add(seq)

    def __len__(self) -> int:
        return self.root.count

    def __contains__(self, seq: Sequence[int]) -> bool:
        node: _Node | None = self.root
        for t in seq:
            node = node.children.get(int(t)) if node is not None else None
        return node is not None and len(seq) == len(self.sizes)

    @property
    def exhausted(self) -> bool:
        return self.root.count >= self.total

    def add(self, seq: Sequence[int]) -> bool:
        """Record ``seq``; returns False when it was already there."""
        if len(seq) != len(self.sizes):
            raise ControllerError(f"sequence has {len(seq)} tokens, expected {len(self.sizes)}")
        if tuple(seq) in self:
            return False
        node = self.root
        node.count += 1
        for t in seq:
            node = node.children.setdefault(int(t), _Node())
            node.count += 1
        return True

    def allowed(self, prefixes: torch.Tensor) -> torch.Tensor:
        """For prefixes [n, depth], a bool mask [n, sizes[depth]] of the values not yet exhausted."""
        n, depth = prefixes.shape
        size = self.sizes[depth]
        mask = torch.ones(n, size, dtype=torch.bool)
        for row, prefix in enumerate(prefixes.tolist()):
            full = [self.capacity[depth + 1]] * size
            if self.constraints is not None:
                full = self.constraints.branch_counts(prefix)
                mask[row] = torch.tensor([c > 0 for c in full])
            node: _Node | None = self.root
            for t in prefix:
                node = node.children.get(t) if node is not None else None
                if node is None:
                    break
            if node is None:
                continue
            for value, child in node.children.items():
                if child.count >= full[value]:
                    mask[row, value] = False
        return mask


PASSES = 8  # draws per proposal call that may reject a known identity before repeats are let through


class Distinct:
    """The identities a strategy has proposed (`l2l.search_spaces.constraints.identity_of`), so that it
    proposes each once: a sampled sequence whose identity was proposed before is rejected and another is
    drawn, in at most `PASSES` draws per call (and as many of a uniform fallback, where the strategy gives
    one); past them, repeats go out (a policy collapsed onto one
    identity cannot loop forever) and are counted. Without an identity (``key`` None) everything is new.
    """

    def __init__(self) -> None:
        self.key: Callable[[Sequence[int]], Hashable] | None = None
        self.keys: set[Hashable] = set()
        self.rejected = 0  # sampled sequences not proposed: their identity was
        self.repeats = 0  # proposals of an identity proposed before, let through at the bound
        self._n_keys = 0  # how many identities a lean checkpoint's ledger must give
        self._keyed = True  # whether that checkpoint's run had an identity to count them by

    def new(self, tokens: Sequence[int]) -> bool:
        """True when ``tokens``' identity has not been proposed (always, without an identity)."""
        return self.key is None or self.key(tokens) not in self.keys

    def take(self, tokens: Sequence[int], force: bool = False) -> bool:
        """Record ``tokens`` as proposed and return True, unless their identity was proposed before: then
        count a rejection and return False, or, with ``force``, count a repeat and return True."""
        if self.key is None:
            return True
        key = self.key(tokens)
        if key in self.keys:
            if not force:
                self.rejected += 1
                return False
            self.repeats += 1
        self.keys.add(key)
        return True

    def propose(
        self,
        n: int,
        draw: Callable[[int], list[Proposal]],
        drop: Callable[[Sequence[Proposal]], None] | None = None,
        fallback: Callable[[int], list[Proposal]] | None = None,
    ) -> list[Proposal]:
        """``n`` proposals of ``draw`` of identities not proposed before, as far as `PASSES` draws find them;
        then as far as `PASSES` draws of ``fallback`` (uniform among the allowed sequences) find them; the
        rest as ``draw`` gives them (repeats, counted). ``drop`` is told each draw's rejected proposals. A
        strategy sampling with replacement proposes through this."""
        if self.key is None:
            return draw(n)
        chosen: list[Proposal] = []
        for source in [draw] * PASSES + ([fallback] * PASSES if fallback is not None else []):
            if len(chosen) >= n:
                break
            dropped: list[Proposal] = []
            for p in source(n - len(chosen)):
                (chosen if self.take(p.tokens) else dropped).append(p)
            if drop is not None and dropped and source is draw:
                drop(dropped)
        for p in draw(n - len(chosen)) if len(chosen) < n else []:
            self.take(p.tokens, force=True)  # a repeat, counted
            chosen.append(p)
        return chosen

    def stats(self) -> dict[str, float]:
        """The counts for an update's statistics (none without an identity)."""
        if self.key is None:
            return {}
        return {"identities": float(len(self.keys)), "identity_rejected": float(self.rejected),
                "identity_repeats": float(self.repeats)}  # fmt: skip

    def state_dict(self, lean: bool = False) -> dict[str, Any]:
        """The counts and, unless ``lean`` (`restore` rebuilds them from the proposed sequences), the identities."""
        out: dict[str, Any] = {"rejected": self.rejected, "repeats": self.repeats, "n_keys": len(self.keys),
                               "keyed": self.key is not None}  # fmt: skip
        if not lean:
            out["keys"] = sorted(self.keys, key=repr)
        return out

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Restore a `state_dict` (None: a checkpoint from before identities, holding none)."""
        state = state or {}
        self.rejected, self.repeats = int(state.get("rejected", 0)), int(state.get("repeats", 0))
        self.keys = {tuple(k) if isinstance(k, list) else k for k in state.get("keys", [])}
        self._n_keys = int(state.get("n_keys", len(self.keys)))
        # whether the checkpointed run had an identity (older checkpoints: whenever it had proposed one); a run
        # that had none (an exact space before its tokens became the identity) rebuilds them unchecked
        self._keyed = bool(state.get("keyed", self._n_keys > 0))

    def restore(self, proposed: Iterable[Sequence[int]], kind: str) -> None:
        """The identities of the ``proposed`` sequences (a run's children), after a lean `load_state_dict`."""
        if self.key is None:
            return
        self.keys = {self.key(t) for t in proposed}
        if self._keyed and len(self.keys) != self._n_keys:
            raise ControllerError(
                f"{kind} checkpoint had proposed {self._n_keys} identities but the ledger's children have "
                f"{len(self.keys)}; checkpoint and children disagree"
            )


class Known:
    """Membership of the sequences proposed or rejected before, or of any sequence of an identity proposed
    before: what screening must not draw again (`Controller.proposed_before`)."""

    def __init__(self, distinct: Distinct, *tokens: Container[tuple[int, ...]]) -> None:
        self.distinct, self.tokens = distinct, tokens

    def __contains__(self, item: object) -> bool:
        if any(item in c for c in self.tokens):
            return True
        return isinstance(item, tuple) and not self.distinct.new(item)


def sample_unique(
    n: int,
    tree: SeenTree,
    distinct: Distinct,
    sample: Callable[[int, SeenTree | None], list[Proposal]],
    keep: Callable[[Sequence[Proposal], bool], list[Proposal]],
    repeat: Callable[[tuple[int, ...]], None],
) -> list[Proposal]:
    """``n`` proposals of a policy sampling among the sequences ``tree`` has not seen (``sample``), of which
    ``keep`` keeps the new ones (marking them, and rejecting those of a known identity unless told to force);
    ``repeat`` marks each sequence proposed once the space is exhausted (one rejected before goes out now).

    Each pass samples among the unproposed sequences only; rows of one pass may still pick the same
    sequence, so at least one new sequence is kept per pass until the space runs out. With an identity, a
    pass may keep none (every row repeats an identity): after `PASSES` passes, new sequences of known
    identities go out; once the whole space has been proposed, repeats are all that is left."""
    chosen: list[Proposal] = []
    passes = 0
    while len(chosen) < n and not tree.exhausted and (distinct.key is None or passes < PASSES):
        chosen.extend(keep(sample(n - len(chosen), tree), False))
        passes += 1
    while len(chosen) < n and not tree.exhausted:
        chosen.extend(keep(sample(n - len(chosen), tree), True))
    if len(chosen) < n:
        for p in sample(n - len(chosen), None):
            distinct.take(p.tokens, force=True)
            repeat(p.tokens)
            chosen.append(p)
    return chosen


class DistinctStrategy(Controller):
    """A strategy that samples with replacement (random search, evolution, Optuna's) and, given an identity
    (`Controller.identify`), proposes each identity once as far as `PASSES` draws find new ones (`Distinct`).
    Subclasses implement `_draw` and keep ``distinct``'s `Distinct.state_dict` in their state."""

    def __init__(self, decisions: Sequence[Decision], seed: int) -> None:
        super().__init__(decisions, seed)
        self.distinct = Distinct()

    def identify(self, identity: Callable[[Sequence[int]], Hashable] | None) -> None:
        super().identify(identity)
        self.distinct.key = identity

    @abstractmethod
    def _draw(self, n: int) -> list[Proposal]:
        """``n`` samples of the strategy, repeats allowed."""

    def _drop(self, proposals: Sequence[Proposal]) -> None:
        """Samples of the latest `_draw` rejected for their identity: a strategy keeping state per sample lets
        them go (Optuna's trials end failed)."""
        del proposals

    def propose(self, n: int) -> list[Proposal]:
        if n < 1:
            raise ControllerError(f"propose needs n >= 1, got {n}")
        generator = self._fallback_generator()  # one per call: each fallback pass draws further along it

        def fallback(k: int) -> list[Proposal]:
            """``k`` sequences drawn uniformly among those allowed: what goes out when the strategy's own draws
            find no new identity (a sampler stuck on what it has seen, as Optuna's GP on an optimum it
            found), before any repeat."""
            from l2l.controllers.constrained import uniform_allowed

            constraints = self.constraints or Constraints(token_sizes(self.decisions))
            return [Proposal(t, 0.0, 0.0, self.policy_version) for t in uniform_allowed(constraints, k, generator)]

        return self.distinct.propose(n, self._draw, self._drop, fallback)

    def _fallback_generator(self) -> torch.Generator:
        """The generator of a proposal call's uniform fallback draws: the strategy's own, which its checkpoint
        holds (a strategy whose checkpoint holds none seeds one from its history)."""
        return self.generator

    # screening (`Controller.candidates`): draws commit to nothing; a pick of an identity proposed before
    # (or by an earlier pick) is left out, and the screen never draws one (`proposed_before`)

    def candidates(self, n: int) -> list[Proposal]:
        return self._draw(n)

    def adopt(self, picks: Sequence[tuple[tuple[int, ...], Proposal | None]]) -> list[Proposal]:
        kept, gone = [], []
        for (_, drawn), p in zip(picks, super().adopt(picks), strict=True):
            if self.distinct.take(p.tokens):
                kept.append(p)
            elif drawn is not None:
                gone.append(drawn)
        self.release(gone)
        return kept

    def proposed_before(self) -> Container[tuple[int, ...]]:
        return Known(self.distinct) if self.distinct.key is not None else frozenset()

    def note_proposed(self, proposals: Sequence[Proposal]) -> None:
        for p in proposals:  # their identities are proposed: not again
            self.distinct.take(p.tokens, force=True)

    def lean_state_dict(self) -> dict[str, Any]:
        # the identities proposed are those of the run's children: `restore` takes them from the ledger
        return {**self.state_dict(), "distinct": self.distinct.state_dict(lean=True)}

    def restore(self, ledger: Ledger) -> None:
        self.distinct.restore(ledger.proposed, self.kind)
