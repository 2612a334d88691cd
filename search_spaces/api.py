"""The search-space plugin API: decisions, specs, results and the `SearchSpace` base class."""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from l2l.search_spaces.results import Context, Result

__all__ = ["ChoiceValue", "Context", "Decision", "OptionValue", "Result", "SearchSpace", "SpaceError", "Spec"]

DecisionKind = Literal["categorical", "anchor"]
OptionValue = str | int | float | bool
ChoiceValue = OptionValue | tuple[int, ...]


class SpaceError(ValueError):
    """A search space, its decisions or a token sequence is malformed."""


@dataclass(frozen=True)
class Decision:
    """One step of the controller: a named categorical choice, or an anchor over earlier layers.

    A categorical decision consumes one token (the option's index). An anchor decision with
    ``n_prev`` earlier anchors consumes ``n_prev`` tokens, one 0/1 bit per earlier anchor: bit j
    says whether the output of anchor j feeds this layer (Zoph & Le's skip connections). An anchor
    with ``n_prev == 0`` consumes no token; it marks the first layer, whose hidden state later
    anchors attend to.
    """

    name: str
    kind: DecisionKind
    options: tuple[OptionValue, ...] = ()
    n_prev: int = 0

    @staticmethod
    def categorical(name: str, options: Iterable[Any]) -> Decision:
        """Build a categorical decision. Options are strings, ints, floats or bools (numpy scalars become
        their Python value) and come back in specs with the type they were declared with."""
        if isinstance(options, str | bytes) or not isinstance(options, Iterable):  # "abc" would be 3 options
            raise SpaceError(f"decision {name!r}: options must be a list of values, got {options!r}")
        return Decision(name=name, kind="categorical", options=tuple(_option(name, o) for o in options))

    @staticmethod
    def anchor(name: str, n_prev: int) -> Decision:
        """Build an anchor decision choosing any subset of the ``n_prev`` earlier anchors."""
        return Decision(name=name, kind="anchor", n_prev=n_prev)

    @property
    def width(self) -> int:
        """Number of tokens this decision consumes in a flat token sequence."""
        return 1 if self.kind == "categorical" else self.n_prev

    @property
    def n_choices(self) -> int:
        """Options per token: the number of options, or 2 (off/on) for an anchor bit."""
        return len(self.options) if self.kind == "categorical" else 2

    def check(self) -> None:
        """Raise `SpaceError` when the decision cannot be sampled."""
        if not isinstance(self.name, str):
            raise SpaceError(f"a decision's name must be text, got {self.name!r}")
        if not self.name:
            raise SpaceError("a decision has an empty name")
        if self.kind == "categorical":
            if len(self.options) < 1:
                raise SpaceError(f"decision {self.name!r} has no options")
            for o in self.options:
                _option(self.name, o)
            if len(set(self.options)) != len(self.options):  # Python counts 1, 1.0 and True as one value
                same = [o for i, o in enumerate(self.options) if o in self.options[:i] or o in self.options[i + 1 :]]
                raise SpaceError(
                    f"decision {self.name!r} has duplicate options {same} (equal as values: 1, 1.0 and True are "
                    f"one) among {list(self.options)}"
                )
        elif self.kind == "anchor":
            if self.n_prev < 0:
                raise SpaceError(f"anchor decision {self.name!r} has n_prev={self.n_prev} < 0")
        else:
            raise SpaceError(f"decision {self.name!r} has unknown kind {self.kind!r}; known: categorical, anchor")


def _option(decision: str, value: Any) -> OptionValue:
    """An option value as a JSON scalar: numpy scalars become Python ones; anything else is refused."""
    if hasattr(value, "item") and not isinstance(value, str | int | float | bool):
        value = value.item()  # numpy and torch scalars
    if not isinstance(value, str | int | float | bool):
        raise SpaceError(
            f"decision {decision!r}: option {value!r} is a {type(value).__name__}; options are str, int, float or bool"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise SpaceError(f"decision {decision!r}: option {value!r} is not a finite number")
    return value


def sequence_length(decisions: Sequence[Decision]) -> int:
    """Total number of tokens a full proposal for these decisions holds."""
    return sum(d.width for d in decisions)


def token_sizes(decisions: Sequence[Decision]) -> list[int]:
    """How many values each position of a flat token sequence can take, in order."""
    return [d.n_choices for d in decisions for _ in range(d.width)]


def decisions_record(decisions: Sequence[Decision]) -> list[list[Any]]:
    """The decisions as JSON (name, kind, options, earlier anchors): what a run keeps of its space, since its
    tokens index them."""
    return [[d.name, d.kind, list(d.options), d.n_prev] for d in decisions]


def decisions_change(recorded: Sequence[Any], decisions: Sequence[Decision]) -> str | None:
    """How ``decisions`` differ from the ``recorded`` ones (`decisions_record`, read back from JSON), in words;
    None when tokens mean the same in both."""
    now = decisions_record(decisions)
    before = [list(d) for d in recorded]
    if [d[0] for d in before] != [d[0] for d in now]:
        return f"its decisions were {[d[0] for d in before]}, now {[d[0] for d in now]}"
    for (name, kind, options, n_prev), (_, kind_now, options_now, n_prev_now) in zip(before, now, strict=True):
        if kind != kind_now:
            return f"decision {name!r} was {kind}, now {kind_now}"
        if options != options_now:
            return f"decision {name!r} had the options {options}, now {options_now}"
        if n_prev != n_prev_now:
            return f"decision {name!r} read {n_prev} earlier anchors, now {n_prev_now}"
    return None


@dataclass(frozen=True)
class Spec(Mapping[str, ChoiceValue]):
    """A decoded candidate: a read-only mapping of decision name to chosen value, in decision order.

    ``spec["filters"]`` is the option as declared (an int stays an int); an anchor's value is a tuple
    of 0/1 bits. Specs are frozen, hashable and JSON-serializable (`to_json` / `from_json`).
    """

    space: str
    choices: tuple[tuple[str, ChoiceValue], ...]
    _index: dict[str, ChoiceValue] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", dict(self.choices))

    def __getitem__(self, name: str) -> ChoiceValue:
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise KeyError(f"spec of space {self.space!r} has no decision {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self.choices)

    def __len__(self) -> int:
        return len(self.choices)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._index
        except TypeError:  # an unhashable key is simply not a decision name
            return False

    def as_dict(self) -> dict[str, ChoiceValue]:
        """Decision name to chosen value, as a plain dict."""
        return dict(self.choices)

    def to_json(self) -> dict[str, Any]:
        """A plain dict that `json.dumps` accepts and `from_json` turns back into an equal spec."""
        return {
            "space": self.space,
            "values": [[k, list(v) if isinstance(v, tuple) else v] for k, v in self.choices],
        }

    @staticmethod
    def from_json(data: Mapping[str, Any] | str) -> Spec:
        """Rebuild a spec stored with `to_json` (a dict or its JSON text)."""
        obj = json.loads(data) if isinstance(data, str) else data
        try:
            choices = tuple((str(k), tuple(int(b) for b in v) if isinstance(v, list) else v) for k, v in obj["values"])
            for name, value in choices:
                if not isinstance(value, tuple):
                    _option(name, value)
            return Spec(space=str(obj["space"]), choices=choices)
        except (KeyError, TypeError, ValueError) as exc:
            raise SpaceError(f"malformed spec JSON {obj!r}: {exc}") from exc


class SearchSpace(ABC):
    """Base class of every search space: declare decisions, decode tokens, evaluate a spec.

    Subclasses set ``name`` and implement `decisions` and `evaluate`. The default `decode` and
    `encode` map tokens to option names and back; override `decode` only to validate more.
    Keyword options given to the constructor (epochs, dataset, ...) are kept in `options` so a
    run can rebuild the same space on resume and on remote workers.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    failure_reward: ClassVar[float] = 0.0
    # what tables and exports show: the name of what `Result.val_acc` measures, and the keys of
    # `Result.test` and `Result.cost` in the order to show them (empty: whatever the results hold)
    validation_metric: ClassVar[str] = "acc"
    test_metrics: ClassVar[tuple[str, ...]] = ()
    cost_metrics: ClassVar[tuple[str, ...]] = ()
    # the `Context.budget` keys `evaluate` reads ("epochs", "steps"): what `l2l runs best --retrain --epochs`
    # and a run's budget may set; empty: the space trains nothing a budget could change (a table lookup)
    budget_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)

    @abstractmethod
    def decisions(self) -> Sequence[Decision]:
        """The ordered decisions a controller takes to write one candidate."""

    @abstractmethod
    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        """Build and train the child described by ``spec``; return its result."""

    def check_data(self) -> None:  # noqa: B027 - optional hook
        """Raise, naming what is missing, when this machine cannot load the data the children need (a dataset
        that needs a package or files it lacks); a new search calls it before a run is recorded. The default
        checks nothing."""

    def shared_data(self) -> dict[str, Any]:
        """Large read-only objects every child needs (datasets); a distributed executor ships them once
        per run (Ray's object store) and hands them to `use_shared_data` on each worker."""
        return {}

    def use_shared_data(self, data: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take the objects `shared_data` returned, on a worker, before `evaluate` runs there."""

    def pinned_data(self) -> dict[str, Any]:
        """What this space measured that decides its rewards (a placement's op timings on this machine), as
        JSON: the store keeps it with a run when the run starts, and a space rebuilt to resume the run or to
        retrain one of its children is handed it by `use_pinned_data`, so it gives the same rewards. Empty
        (the default): nothing measured, the options alone rebuild the space."""
        return {}

    def use_pinned_data(self, data: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take what `pinned_data` returned when the run started, before any child is evaluated."""

    def shared_network(self) -> Any:
        """What this space offers for weight sharing (`l2l search --weight-sharing`): a
        `l2l.search_spaces.sharing.SharedNetwork`, or None (the default) when it offers none."""
        return None

    def graph(self, spec: Spec) -> dict[str, Any]:
        """The architecture as a graph for `l2l plot arch`: ``{"nodes": [label, ...], "edges": [[i, j, label],
        ...]}``. The default is a chain of the decisions' values; spaces with real topologies override it."""
        nodes = ["input"] + [f"{k}={v}" for k, v in spec.items()] + ["output"]
        return {"nodes": nodes, "edges": [[i, i + 1, ""] for i in range(len(nodes) - 1)]}

    def forbidden(self) -> Sequence[Mapping[str, OptionValue]]:
        """Combinations of choices no candidate may hold: each ``{decision: value, ...}`` rules out every
        candidate that takes all of those values together (categorical decisions only). Controllers never
        propose them (`l2l.search_spaces.constraints`). The default forbids nothing."""
        return ()

    def canonical(self, spec: Spec) -> Spec | None:
        """The canonical spec of the architecture ``spec`` describes: specs that build the same network
        (an unused branch, a symmetric ordering) map to one of them, which maps to itself. Counting,
        "never propose twice" and the optimum then work on architectures. None (the default, or for
        every spec when an option turns it off): the space has no canonical form."""
        return None

    def identity(self, spec: Spec) -> str | None:
        """What makes specs one candidate when their tokens differ and the space has no canonical form to write
        them as one: specs of the same identity get the same evaluation (update rules that compute the same
        update: their functional hash). A strategy that never repeats never proposes an identity twice
        (`l2l.search_spaces.constraints.identity_of`). None (the default, or for every spec when an option
        turns it off): the tokens, or the canonical tokens, are the identity."""
        return None

    def ignored_options(self) -> list[str]:
        """Options given that change nothing with the others (each a line naming it and what it needs): a new
        run and `l2l spaces show` refuse them; a stored run with them still rebuilds. Empty (the default)."""
        return []

    def exact_rewards(self) -> bool:
        """True when evaluating a spec again always gives the same reward (a table lookup without noise):
        re-evaluation (``STRATEGY+reeval``) then never spends a child on it. The default, False, suits
        anything trained: another seed gives another reward."""
        return False

    def retrain_refusal(self) -> str | None:
        """Why `l2l runs best --retrain` would measure nothing new for this space's children, and what
        measures them instead; None (the default) where a retraining is the honest number."""
        return None

    def optimum(self) -> tuple[int, ...] | None:
        """The best token sequence when it is known (toy spaces, tabular benchmarks), else None."""
        return None

    def decode(self, tokens: Sequence[int]) -> Spec:
        """Turn a flat token sequence into a spec, checking its length and every token's range."""
        decisions = self.decisions()
        expected = sequence_length(decisions)
        if len(tokens) != expected:
            raise SpaceError(f"space {self.name!r} expects {expected} tokens, got {len(tokens)}")
        values: list[tuple[str, ChoiceValue]] = []
        pos = 0
        for d in decisions:
            chunk = [int(t) for t in tokens[pos : pos + d.width]]
            for t in chunk:
                if not 0 <= t < d.n_choices:
                    raise SpaceError(
                        f"token {t} at position {pos} out of range for decision {d.name!r} (0..{d.n_choices - 1})"
                    )
            values.append((d.name, d.options[chunk[0]] if d.kind == "categorical" else tuple(chunk)))
            pos += d.width
        return Spec(space=self.name, choices=tuple(values))

    def encode(self, spec: Spec) -> tuple[int, ...]:
        """The token sequence that decodes to ``spec`` (the inverse of `decode`)."""
        tokens: list[int] = []
        for d in self.decisions():
            value = spec[d.name]
            if d.kind == "categorical":
                if value not in d.options:
                    raise SpaceError(f"value {value!r} of decision {d.name!r} is not one of {list(d.options)}")
                tokens.append(d.options.index(value))
            else:
                if not isinstance(value, tuple) or len(value) != d.n_prev:
                    raise SpaceError(f"anchor {d.name!r} needs {d.n_prev} bits, got {value!r}")
                tokens.extend(int(b) for b in value)
        return tuple(tokens)

    def describe(self, spec: Spec) -> str:
        """A one-line human-readable form of a spec, for tables."""
        parts = []
        for k, v in spec.items():
            if isinstance(v, tuple):
                if v:
                    parts.append(f"{k}={''.join(str(b) for b in v)}")
            else:
                parts.append(f"{k}={v}")
        return " ".join(parts)


def described(space: SearchSpace, spec: Spec) -> str:
    """``space.describe(spec)`` for tables and pages: where a plugin's `describe` raises or gives no text,
    the spec's own ``name=value`` form (the base class's), so a table of results never fails on one row."""
    try:
        text = space.describe(spec)
    except Exception:  # plugin code; the spec is still worth showing
        text = None
    return text if isinstance(text, str) else SearchSpace.describe(space, spec)
