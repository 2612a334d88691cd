"""The search-space plugin API: decisions, specs, results and the `SearchSpace` base class."""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

DecisionKind = Literal["categorical", "anchor"]
ChoiceValue = str | tuple[int, ...]


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
    options: tuple[str, ...] = ()
    n_prev: int = 0

    @staticmethod
    def categorical(name: str, options: Sequence[str | int | float]) -> Decision:
        """Build a categorical decision; option values are stored as strings."""
        return Decision(name=name, kind="categorical", options=tuple(str(o) for o in options))

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
        if not self.name:
            raise SpaceError("a decision has an empty name")
        if self.kind == "categorical":
            if len(self.options) < 1:
                raise SpaceError(f"decision {self.name!r} has no options")
            if len(set(self.options)) != len(self.options):
                raise SpaceError(f"decision {self.name!r} has duplicate options {list(self.options)}")
        elif self.kind == "anchor":
            if self.n_prev < 0:
                raise SpaceError(f"anchor decision {self.name!r} has n_prev={self.n_prev} < 0")
        else:
            raise SpaceError(f"decision {self.name!r} has unknown kind {self.kind!r}; known: categorical, anchor")


def sequence_length(decisions: Sequence[Decision]) -> int:
    """Total number of tokens a full proposal for these decisions holds."""
    return sum(d.width for d in decisions)


def token_sizes(decisions: Sequence[Decision]) -> list[int]:
    """How many values each position of a flat token sequence can take, in order."""
    return [d.n_choices for d in decisions for _ in range(d.width)]


@dataclass(frozen=True)
class Spec:
    """A decoded candidate: the chosen value of every decision, in order; frozen and JSON-serializable."""

    space: str
    values: tuple[tuple[str, ChoiceValue], ...]

    def __getitem__(self, name: str) -> ChoiceValue:
        for key, value in self.values:
            if key == name:
                return value
        raise KeyError(f"spec of space {self.space!r} has no decision {name!r}")

    def get(self, name: str, default: ChoiceValue | None = None) -> ChoiceValue | None:
        """The value of decision ``name``, or ``default`` when the spec has no such decision."""
        try:
            return self[name]
        except KeyError:
            return default

    def as_dict(self) -> dict[str, ChoiceValue]:
        """Decision name to chosen value, for builders that want keyword access."""
        return dict(self.values)

    def to_json(self) -> dict[str, Any]:
        """A plain dict that `json.dumps` accepts and `from_json` turns back into an equal spec."""
        return {
            "space": self.space,
            "values": [[k, list(v) if isinstance(v, tuple) else v] for k, v in self.values],
        }

    @staticmethod
    def from_json(data: Mapping[str, Any] | str) -> Spec:
        """Rebuild a spec stored with `to_json` (a dict or its JSON text)."""
        obj = json.loads(data) if isinstance(data, str) else data
        try:
            values = tuple(
                (str(k), tuple(int(b) for b in v) if isinstance(v, list) else str(v)) for k, v in obj["values"]
            )
            return Spec(space=str(obj["space"]), values=values)
        except (KeyError, TypeError, ValueError) as exc:
            raise SpaceError(f"malformed spec JSON {obj!r}: {exc}") from exc


@dataclass(frozen=True)
class Context:
    """What a worker tells a child about where and how it runs."""

    child: int = 0
    seed: int = 0
    device: str = "cpu"
    budget: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1
    report: Callable[[int, float], bool] | None = field(default=None, compare=False, repr=False)
    # this process's place among the processes that train one child data-parallel (--workers-per-child)
    rank: int = 0
    world_size: int = 1

    def should_stop(self, epoch: int, value: float) -> bool:
        """Report a child's validation value after ``epoch``; True when a pruner says stop now."""
        return self.report(epoch, value) if self.report is not None else False


@dataclass(frozen=True)
class Result:
    """What evaluating one child produced: reward, metrics, cost and per-epoch curves."""

    reward: float
    val_loss: float | None = None
    val_acc: float | None = None
    test: Mapping[str, float] = field(default_factory=dict)
    cost: Mapping[str, float] = field(default_factory=dict)
    curves: Mapping[str, Sequence[float]] = field(default_factory=dict)
    status: Literal["done", "failed"] = "done"
    error: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the child finished with a finite reward."""
        return self.status == "done" and math.isfinite(self.reward)

    @staticmethod
    def failed(error: str, **info: Any) -> Result:
        """A failure result carrying its reason; the search loop assigns the failure reward."""
        return Result(reward=float("nan"), status="failed", error=error, info=info)

    def metrics(self) -> dict[str, float | None]:
        """The scalar metrics reward transforms look at (costs as ``cost_<name>``)."""
        out: dict[str, float | None] = {"reward": self.reward, "val_acc": self.val_acc, "val_loss": self.val_loss}
        out.update({f"cost_{k}": float(v) for k, v in self.cost.items() if v is not None})
        return out

    def to_json(self) -> dict[str, Any]:
        """A plain dict for storage; curves and costs become lists and floats."""
        return {
            "reward": _finite_or_none(self.reward),
            "val_loss": _finite_or_none(self.val_loss),
            "val_acc": _finite_or_none(self.val_acc),
            "test": {k: _finite_or_none(v) for k, v in self.test.items()},
            "cost": {k: _finite_or_none(v) for k, v in self.cost.items()},
            "curves": {k: [_finite_or_none(x) for x in v] for k, v in self.curves.items()},
            "status": self.status,
            "error": self.error,
            "info": dict(self.info),
        }


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


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

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)

    @abstractmethod
    def decisions(self) -> Sequence[Decision]:
        """The ordered decisions a controller takes to write one candidate."""

    @abstractmethod
    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        """Build and train the child described by ``spec``; return its result."""

    def shared_data(self) -> dict[str, Any]:
        """Large read-only objects every child needs (datasets); a distributed executor ships them once
        per run (Ray's object store) and hands them to `use_shared_data` on each worker."""
        return {}

    def use_shared_data(self, data: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook
        """Take the objects `shared_data` returned, on a worker, before `evaluate` runs there."""

    def graph(self, spec: Spec) -> dict[str, Any]:
        """The architecture as a graph for `l2l plot arch`: ``{"nodes": [label, ...], "edges": [[i, j, label],
        ...]}``. The default is a chain of the decisions' values; spaces with real topologies override it."""
        nodes = ["input"] + [f"{k}={v}" for k, v in spec.values] + ["output"]
        return {"nodes": nodes, "edges": [[i, i + 1, ""] for i in range(len(nodes) - 1)]}

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
        return Spec(space=self.name, values=tuple(values))

    def encode(self, spec: Spec) -> tuple[int, ...]:
        """The token sequence that decodes to ``spec`` (the inverse of `decode`)."""
        tokens: list[int] = []
        for d in self.decisions():
            value = spec[d.name]
            if d.kind == "categorical":
                if value not in d.options:
                    raise SpaceError(f"value {value!r} of decision {d.name!r} is not one of {list(d.options)}")
                tokens.append(d.options.index(str(value)))
            else:
                if not isinstance(value, tuple) or len(value) != d.n_prev:
                    raise SpaceError(f"anchor {d.name!r} needs {d.n_prev} bits, got {value!r}")
                tokens.extend(int(b) for b in value)
        return tuple(tokens)

    def describe(self, spec: Spec) -> str:
        """A one-line human-readable form of a spec, for tables."""
        parts = []
        for k, v in spec.values:
            if isinstance(v, tuple):
                if v:
                    parts.append(f"{k}={''.join(str(b) for b in v)}")
            else:
                parts.append(f"{k}={v}")
        return " ".join(parts)
