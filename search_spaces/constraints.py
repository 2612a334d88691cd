"""Which token sequences a controller may propose: a space's forbidden combinations, its canonical form and
the identity of its candidates.

A space may declare combinations of choices that make no valid candidate (`SearchSpace.forbidden`) and a
canonical form under which several token sequences are one architecture (`SearchSpace.canonical`).
`Constraints` turns both into what a sampler needs at each position: how many allowed sequences start
with each value (`branch_counts`). A sampler that only draws values with a count above zero can never
reach a dead end, so no candidate is ever drawn and thrown away.

Spaces with a canonical form and at most `ENUMERATE_LIMIT` token sequences are enumerated once: each
architecture is proposed as one sequence (its canonical one), so counting, "never propose twice" and the
optimum all work on architectures. Larger spaces keep their forbidden combinations exact (by a dynamic
program over the clauses) and are counted in token sequences.

Where tokens that differ are still one candidate and no canonical sequence can be written for it (update
rules that compute the same update), the space declares an identity (`SearchSpace.identity`); `identity_of`
turns it, or a canonical form too large to enumerate, into a key per token sequence, with which strategies
that never repeat reject a sampled sequence whose identity they proposed before.
"""

from __future__ import annotations

import itertools
import math
import random
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from l2l.search_spaces.api import Decision, SpaceError, token_sizes

if TYPE_CHECKING:
    from l2l.search_spaces.api import SearchSpace

_BUILT: weakref.WeakKeyDictionary[SearchSpace, Constraints | None] = weakref.WeakKeyDictionary()
ENUMERATE_LIMIT = 200_000  # token sequences a canonical space may have to be enumerated at load
CHECKED_SAMPLES = 64  # allowed sequences whose canonical form is checked at load where there are more
IDENTITY_CACHE = 1 << 16  # identities remembered per space: a resumed strategy asks again for its proposals'

Tokens = tuple[int, ...]


def clauses_of(decisions: Sequence[Decision], forbidden: Iterable[Mapping[str, object]]) -> list[dict[int, int]]:
    """Each forbidden combination as {token position: token}; a name or value the decisions lack is a
    `SpaceError` naming it."""
    where: dict[str, tuple[int, Decision]] = {}
    pos = 0
    for d in decisions:
        where[d.name] = (pos, d)
        pos += d.width
    out = []
    for i, combination in enumerate(forbidden):
        if not isinstance(combination, Mapping) or not combination:
            raise SpaceError(f"forbidden combination {i} is {combination!r}; expected a non-empty {{decision: value}}")
        clause = {}
        for name, value in combination.items():
            if name not in where:
                raise SpaceError(f"forbidden combination {i} names no decision {name!r}")
            p, d = where[name]
            if d.kind != "categorical":
                raise SpaceError(f"forbidden combination {i}: {name!r} is an anchor; only categorical choices combine")
            if value not in d.options:
                raise SpaceError(f"forbidden combination {i}: {value!r} is not an option of {name!r} {list(d.options)}")
            clause[p] = d.options.index(value)
        out.append(clause)
    return out


class Constraints:
    """The allowed token sequences of a space: those no forbidden combination matches and, for an enumerated
    canonical space, only the canonical sequence of each architecture."""

    def __init__(
        self,
        sizes: Sequence[int],
        clauses: Sequence[Mapping[int, int]] = (),
        members: Iterable[Tokens] | None = None,
        canonical: Callable[[Tokens], Tokens] | None = None,
    ) -> None:
        self.sizes = list(sizes)
        self.clauses = [dict(c) for c in clauses]
        self._canonical = canonical
        self._memo: dict[Tokens, Tokens] = {}
        self._trie: dict[Tokens, list[int]] | None = None
        if members is not None:
            self._trie = _prefix_counts(self.sizes, members)
        self._counts = lru_cache(maxsize=None)(self._count_from)

    @staticmethod
    def of(space: SearchSpace) -> Constraints | None:
        """The constraints of ``space``; None when it declares neither forbidden combinations nor a canonical form.
        Built once per space object (enumerating a canonical space takes a moment)."""
        try:
            return _BUILT[space]
        except KeyError:
            pass
        except TypeError:  # a space that cannot be a weak key: built each time
            return Constraints._build(space)
        built = _BUILT[space] = Constraints._build(space)
        return built

    @staticmethod
    def _build(space: SearchSpace) -> Constraints | None:
        decisions = list(space.decisions())
        clauses = clauses_of(decisions, space.forbidden())
        sizes = token_sizes(decisions)
        zeros = [0] * len(sizes)
        try:
            first = space.decode(zeros)
        except SpaceError:
            raise
        except Exception as exc:  # plugin code: name its decode, not the constraints it may not have
            raise SpaceError(f"space {space.name!r}: decode({zeros}) raised {exc!r}") from exc
        has_canonical = space.canonical(first) is not None
        if not clauses and not has_canonical:
            return None
        canonical = _canonical_tokens(space) if has_canonical else None
        members = None
        if canonical is not None:  # every allowed sequence where it can be enumerated, else a sample of them
            plain = Constraints(sizes, clauses)
            every = math.prod(sizes) <= ENUMERATE_LIMIT
            members = _checked_members(space, plain, canonical, None if every else CHECKED_SAMPLES)
            members = members if every else None
        constraints = Constraints(sizes, clauses, members, canonical)
        if constraints.count() == 0:
            raise SpaceError(f"space {space.name!r}: its forbidden combinations leave no candidate")
        return constraints

    @property
    def canonical_form(self) -> bool:
        """True when the space declares a canonical form (enumerated or not)."""
        return self._canonical is not None

    @property
    def enumerated(self) -> bool:
        """True when the allowed sequences are one per architecture (a canonical space small enough to list)."""
        return self._trie is not None

    def branch_counts(self, prefix: Sequence[int]) -> list[int]:
        """For the position after ``prefix``, how many allowed sequences start with ``prefix`` and each value."""
        prefix = tuple(int(t) for t in prefix)
        if self._trie is not None:
            return list(self._trie.get(prefix, [0] * self.sizes[len(prefix)]))
        alive = self._alive(prefix)
        depth = len(prefix)
        if any(max(self.clauses[i]) < depth for i in alive):  # the prefix holds a forbidden combination
            return [0] * self.sizes[depth]
        out = []
        for value in range(self.sizes[depth]):
            after = self._step(alive, depth, value)
            out.append(0 if after is None else self._counts(depth + 1, after))
        return out

    def count(self, prefix: Sequence[int] = ()) -> int:
        """How many allowed sequences start with ``prefix`` (all of them for the empty prefix)."""
        if len(prefix) == len(self.sizes):
            return int(self.valid(prefix))
        return sum(self.branch_counts(prefix))

    def valid(self, tokens: Sequence[int]) -> bool:
        """True when ``tokens`` is an allowed sequence."""
        tokens = tuple(int(t) for t in tokens)
        if len(tokens) != len(self.sizes):
            return False
        if self._trie is not None:
            return bool(self._trie.get(tokens[:-1], [0] * self.sizes[-1])[tokens[-1]])
        return not any(all(tokens[p] == v for p, v in c.items()) for c in self.clauses)

    def canonical(self, tokens: Sequence[int]) -> Tokens:
        """The canonical sequence of the architecture ``tokens`` describe (itself without a canonical form);
        remembered for the last `IDENTITY_CACHE` sequences asked (a run's ranking asks once per child)."""
        tokens = tuple(int(t) for t in tokens)
        if self._canonical is None:
            return tokens
        same = self._memo.get(tokens)
        if same is None:
            if len(self._memo) >= IDENTITY_CACHE:
                self._memo.clear()
            same = self._memo[tokens] = self._canonical(tokens)
        return same

    def repair(self, tokens: Sequence[int]) -> Tokens:
        """An allowed sequence for ``tokens``: its canonical sequence when that is allowed, else, position by
        position, the nearest value that still leads to an allowed sequence (ties to the lower value)."""
        same = self.canonical(tokens)
        if self.valid(same):
            return same
        out: list[int] = []
        for want in tokens:
            counts = self.branch_counts(out)
            out.append(min((v for v, c in enumerate(counts) if c), key=lambda v: (abs(v - int(want)), v)))
        return tuple(out)

    # the dynamic program over clauses: a state is the set of clauses the prefix has matched so far

    def _alive(self, prefix: Tokens) -> frozenset[int]:
        depth = len(prefix)
        return frozenset(
            i for i, c in enumerate(self.clauses) if all(prefix[p] == v for p, v in c.items() if p < depth)
        )

    def _step(self, alive: frozenset[int], depth: int, value: int) -> frozenset[int] | None:
        """The clauses still matched after ``value`` at ``depth``; None when one is now matched in full."""
        kept = []
        for i in alive:
            clause = self.clauses[i]
            if depth in clause and clause[depth] != value:
                continue
            if depth in clause and max(clause) == depth:
                return None
            kept.append(i)
        return frozenset(kept)

    def _count_from(self, depth: int, alive: frozenset[int]) -> int:
        if depth == len(self.sizes):
            return 1
        if not any(p >= depth for i in alive for p in self.clauses[i]):
            return math.prod(self.sizes[depth:])
        total = 0
        for value in range(self.sizes[depth]):
            after = self._step(alive, depth, value)
            if after is not None:
                total += self._counts(depth + 1, after)
        return total


def _prefix_counts(sizes: Sequence[int], members: Iterable[Tokens]) -> dict[Tokens, list[int]]:
    """For every prefix of the members, how many members continue with each value."""
    trie: dict[Tokens, list[int]] = {}
    for tokens in members:
        for depth in range(len(sizes)):
            trie.setdefault(tokens[:depth], [0] * sizes[depth])[tokens[depth]] += 1
    return trie


def _canonical_tokens(space: SearchSpace) -> Callable[[Tokens], Tokens]:
    def canonical(tokens: Tokens) -> Tokens:
        spec = space.decode(tokens)
        try:
            same = space.canonical(spec)
        except Exception as exc:  # plugin code
            raise SpaceError(f"space {space.name!r}: canonical() of {_text(spec)} raised {exc!r}") from exc
        if same is None:
            raise SpaceError(f"space {space.name!r}: canonical() of {_text(spec)} is None, though not for every spec")
        try:
            return tuple(int(t) for t in space.encode(same))
        except Exception as exc:  # a value the decision does not have, a missing decision
            raise SpaceError(
                f"space {space.name!r}: canonical() of {_text(spec)} gave a spec that does not encode: {exc}"
            ) from None

    return canonical


def _text(spec: Mapping[str, Any]) -> str:
    """A spec as its author wrote it: ``name=value`` pairs, not token indices."""
    return "{" + ", ".join(f"{k}={v}" for k, v in spec.items()) + "}"


def _checked_members(
    space: SearchSpace, plain: Constraints, canonical: Callable[[Tokens], Tokens], samples: int | None
) -> set[Tokens]:
    """The canonical sequences of every allowed sequence (or of ``samples`` drawn uniformly among them, for a
    space too large to enumerate), each checked: allowed itself (a forbidden canonical spec would silently
    remove architectures) and stable (its own canonical sequence)."""
    if samples is None:
        sequences: Iterable[Tokens] = (t for t in itertools.product(*(range(k) for k in plain.sizes)) if plain.valid(t))
    else:
        rng = random.Random(0)
        drawn = []
        for _ in range(samples):
            prefix: list[int] = []
            for _ in plain.sizes:
                counts = plain.branch_counts(prefix)
                prefix.append(rng.choices(range(len(counts)), weights=counts)[0])
            drawn.append(tuple(prefix))
        sequences = drawn
    members: set[Tokens] = set()
    for tokens in sequences:
        same = canonical(tokens)
        if same in members:
            continue
        if not plain.valid(same):
            raise SpaceError(
                f"space {space.name!r}: canonical() of the allowed {_text(space.decode(tokens))} is "
                f"{_text(space.decode(same))}, which a forbidden combination rules out"
            )
        again = canonical(same)
        if again != same:
            raise SpaceError(
                f"space {space.name!r}: canonical form is not stable: {_text(space.decode(same))} -> "
                f"{_text(space.decode(again))}"
            )
        members.add(same)
    return members


Identity = Callable[[Sequence[int]], Hashable]


def identity_of(space: SearchSpace) -> Identity | None:
    """The identity of ``space``'s token sequences, for strategies that never propose a candidate twice: its
    `SearchSpace.identity` when it declares one, else the canonical sequence when its canonical form is too
    large to enumerate (an enumerated one is proposed one sequence per architecture already); None when the
    tokens are the identity. Each sequence's identity is computed once (up to `IDENTITY_CACHE` of them)."""
    n = len(token_sizes(space.decisions()))
    constraints = Constraints.of(space)
    probe = constraints.repair([0] * n) if constraints is not None else tuple([0] * n)  # an allowed sequence
    if _identity(space, probe, none_ok=True) is not None:
        key: Callable[[Tokens], Hashable] = lambda tokens: _identity(space, tokens)  # noqa: E731
    else:
        if constraints is None or not constraints.canonical_form or constraints.enumerated:
            return None
        key = constraints.canonical
    cached = lru_cache(maxsize=IDENTITY_CACHE)(key)
    return lambda tokens: cached(tuple(int(t) for t in tokens))


def _identity(space: SearchSpace, tokens: Tokens, none_ok: bool = False) -> Hashable:
    try:
        value = space.identity(space.decode(tokens))
    except SpaceError:
        raise
    except Exception as exc:  # plugin code
        raise SpaceError(f"space {space.name!r}: identity of {list(tokens)} failed: {exc!r}") from exc
    if value is None and not none_ok:
        raise SpaceError(f"space {space.name!r}: identity of {list(tokens)} is None for this one only")
    if value is not None and not isinstance(value, Hashable):
        raise SpaceError(f"space {space.name!r}: identity of {list(tokens)} is a {type(value).__name__}, not hashable")
    return value
