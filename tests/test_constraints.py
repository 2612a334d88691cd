"""Forbidden combinations and canonical forms: exact counts, no dead ends, and searches that respect them."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from l2l.controllers.constrained import fair_allowed, neighbours, uniform_allowed
from l2l.runs.cli import app
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import (
    Context,
    Decision,
    PluginError,
    Result,
    SearchSpace,
    SpaceError,
    Spec,
    load_space,
    token_sizes,
)
from l2l.search_spaces.constraints import Constraints, clauses_of
from l2l.search_spaces.nb201 import OPS, canonical_cells, unique_str

DECISIONS = [
    Decision.categorical("a", [0, 1, 2]),
    Decision.anchor("in0", 0),
    Decision.categorical("b", ["x", "y"]),
    Decision.anchor("in1", 1),
    Decision.categorical("c", [1.0, 2.0, 3.0]),
    Decision.categorical("d", [True, False]),
]


def brute(sizes: Sequence[int], clauses: Sequence[Mapping[int, int]]) -> set[tuple[int, ...]]:
    every = itertools.product(*(range(k) for k in sizes))
    return {t for t in every if not any(all(t[p] == v for p, v in c.items()) for c in clauses)}


@pytest.mark.parametrize("seed", range(12))
def test_counts_of_every_prefix_match_enumeration(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [rng.randint(1, 3) for _ in range(rng.randint(2, 6))]
    clauses = []
    for _ in range(rng.randint(1, 5)):
        where = rng.sample(range(len(sizes)), rng.randint(1, min(3, len(sizes))))
        clauses.append({p: rng.randrange(sizes[p]) for p in where})
    constraints = Constraints(sizes, clauses)
    allowed = brute(sizes, clauses)
    assert constraints.count() == len(allowed)
    for depth in range(len(sizes)):
        for prefix in itertools.product(*(range(k) for k in sizes[:depth])):
            expected = [sum(1 for t in allowed if t[: depth + 1] == (*prefix, v)) for v in range(sizes[depth])]
            assert constraints.branch_counts(prefix) == expected
    for t in itertools.product(*(range(k) for k in sizes)):
        assert constraints.valid(t) == (t in allowed)
        if allowed:
            assert constraints.repair(t) in allowed and (t not in allowed or constraints.repair(t) == t)


def test_uniform_draws_weight_each_value_by_the_sequences_behind_it() -> None:
    # a=0 leaves 1 sequence, a=1 leaves 3: a uniform draw over the 4 allowed sequences picks a=0 a quarter of the time
    constraints = Constraints([2, 3], [{0: 0, 1: 1}, {0: 0, 1: 2}])
    draws = uniform_allowed(constraints, 4000, torch.Generator().manual_seed(0))
    counts = Counter(draws)
    assert set(counts) == {(0, 0), (1, 0), (1, 1), (1, 2)}
    assert all(850 < n < 1150 for n in counts.values()), counts


def test_a_fair_group_takes_every_value_of_every_position_equally_often_and_only_allowed_sequences() -> None:
    # FairNAS's strict fairness: 5 sequences in which each of the 5 values of each position appears once
    generator = torch.Generator().manual_seed(0)
    group = fair_allowed(Constraints([5, 5, 5, 2]), generator)
    assert len(group) == 5
    for position, size in enumerate([5, 5, 5, 2]):
        assert sorted(Counter(t[position] for t in group).values()) == ([1] * 5 if size == 5 else [2, 3])
    assert fair_allowed(Constraints([5, 5, 5, 2]), generator) != group  # another order each time
    # constrained: every sequence allowed, fair where the constraints leave the choice
    constraints = Constraints([3, 3], [{0: 0, 1: 1}, {0: 0, 1: 2}])  # a=0 only with b=0
    for _ in range(20):
        drawn = fair_allowed(constraints, generator)
        assert all(constraints.valid(t) for t in drawn) and sorted(t[0] for t in drawn) == [0, 1, 2]


def test_neighbours_are_distinct_allowed_architectures_one_decision_away() -> None:
    decisions = [Decision.categorical("a", [0, 1, 2]), Decision.categorical("b", [0, 1])]
    constraints = Constraints([3, 2], clauses_of(decisions, [{"a": 2, "b": 1}]))
    assert sorted(neighbours((0, 1), decisions, constraints)) == [(0, 0), (1, 1)]  # (2, 1) is forbidden
    assert sorted(neighbours((0, 1), decisions, None)) == [(0, 0), (1, 1), (2, 1)]


@pytest.mark.parametrize(
    ("forbidden", "message"),
    [
        ([{"zz": 0}], "forbidden combination 0 names no decision 'zz'"),
        ([{"a": 0}, {"in1": (1,)}], "forbidden combination 1: 'in1' is an anchor"),
        ([{"b": "q"}], r"forbidden combination 0: 'q' is not an option of 'b' \['x', 'y'\]"),
        ([{}], "forbidden combination 0 is {}"),
    ],
)
def test_a_malformed_combination_is_named(forbidden: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        clauses_of(DECISIONS, forbidden)


class Layers(SearchSpace):
    """Two layers; a pooling layer takes no width, and a skip then a skip is forbidden. Canonical on request:
    a pooling layer's width does not matter."""

    name = "layers"

    def __init__(self, canonical: bool = False, forbid_all: bool = False) -> None:
        super().__init__(canonical=canonical, forbid_all=forbid_all)

    def decisions(self) -> Sequence[Decision]:
        out = []
        for i in range(2):
            out += [Decision.categorical(f"op{i}", ["conv", "pool", "skip"]), Decision.categorical(f"w{i}", [8, 16])]
        return out

    def forbidden(self) -> Sequence[Mapping[str, Any]]:
        if self.options["forbid_all"]:
            return [{"op0": "conv"}, {"op0": "pool"}, {"op0": "skip"}]
        return [{"op0": "skip", "op1": "skip"}, {"op0": "pool", "w0": 16}]

    def canonical(self, spec: Spec) -> Spec | None:
        if not self.options["canonical"]:
            return None
        values = dict(spec)
        for i in range(2):
            if values[f"op{i}"] == "pool":
                values[f"w{i}"] = 8
        return Spec(spec.space, tuple(values.items()))

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        assert not (spec["op0"] == "skip" and spec["op1"] == "skip"), "a forbidden combination was evaluated"
        score = (spec["op0"] == "conv") * 0.5 + spec["w1"] / 32  # type: ignore[operator]
        return Result(reward=score, val_acc=score)


def test_a_space_whose_forbidden_combinations_leave_nothing_is_refused() -> None:
    ref = f"{Path(__file__).resolve()}:Layers"
    with pytest.raises(PluginError, match=r"^search space 'layers': its forbidden combinations leave no candidate$"):
        load_space(ref, {"forbid_all": True})  # the space named once


def test_spaces_show_counts_architectures_and_lists_the_forbidden() -> None:
    ref = f"{Path(__file__).resolve()}:Layers"
    plain = CliRunner().invoke(app, ["spaces", "show", ref])
    assert "forbidden: op0=skip, op1=skip" in plain.output
    assert "4 tokens, 26 candidates (36 with the forbidden ones)" in plain.output
    canonical = CliRunner().invoke(app, ["spaces", "show", ref, "-S", "canonical=true"])
    # canonical: op0 conv 2 widths, pool 1, skip 2 = 5 first layers, times 5 second layers, less skip-skip (2 x 2)
    assert "4 tokens, 36 token sequences (26 allowed), 21 architectures" in canonical.output, canonical.output


@pytest.mark.parametrize("strategy", ["reinforce+screen", "evolution", "tpe", "random"])
def test_a_search_never_trains_a_forbidden_or_repeated_architecture(strategy: str, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    ref = f"{Path(__file__).resolve()}:Layers"
    config = SearchConfig(space=ref, space_options={"canonical": True}, strategy=strategy, children=21, seed=1)
    search = Search.start(store, config)
    search.run()
    children = store.children(search.run_id)
    assert [c.status for c in children] == ["done"] * 21, [c.error for c in children]
    constraints = Constraints.of(search.space)
    assert constraints is not None and all(constraints.valid(c.tokens) for c in children)
    if strategy == "reinforce+screen":  # a strategy that never proposes twice covers all 21
        assert len({tuple(c.tokens) for c in children}) == 21


def test_nb201_canonical_cells_are_the_benchmarks_6466_computations() -> None:
    cells = canonical_cells()
    assert len(cells) == 6466
    space = load_space("nb201", {"canonical": True})
    constraints = Constraints.of(space)
    assert constraints is not None and constraints.enumerated and constraints.count() == 6466
    # a cell whose output sees only a skip from the input computes what any cell doing only that computes
    skip_only = space.encode(space.decode((0, 0, 0, 1, 0, 0)))
    assert unique_str([OPS[t] for t in skip_only]) == "#+#+0"
    assert constraints.canonical((4, 4, 4, 1, 0, 0)) == constraints.canonical((0, 3, 2, 1, 0, 0))
    best = space.optimum()
    assert best is not None and constraints.valid(best) and best == constraints.canonical(best)
    assert Constraints.of(load_space("nb201")) is None  # the default space stays the 15,625 cells
    assert token_sizes(space.decisions()) == [5] * 6


class Flawed(Layers):
    """`Layers` with a canonical form that is wrong in a chosen way, and optionally too large to enumerate."""

    name = "flawed"

    def __init__(self, flaw: str = "forbidden", large: bool = False) -> None:
        SearchSpace.__init__(self, canonical=True, forbid_all=False, flaw=flaw, large=large)

    def decisions(self) -> Sequence[Decision]:
        extra = [Decision.categorical(f"pad{i}", range(10)) for i in range(6)] if self.options["large"] else []
        return [*super().decisions(), *extra]

    def canonical(self, spec: Spec) -> Spec | None:
        values, flaw = dict(spec), self.options["flaw"]
        if flaw == "forbidden" and values["op0"] == "conv":  # lands on the forbidden pool with width 16
            values.update(op0="pool", w0=16)
        if flaw == "unstable":
            values["w1"] = 16 if values["w1"] == 8 else 8
        if flaw == "undecodable":
            values["w1"] = 0
        return Spec(spec.space, tuple(values.items()))


@pytest.mark.parametrize("large", [False, True], ids=["enumerated", "sampled"])
def test_a_canonical_form_that_is_forbidden_unstable_or_undecodable_is_refused_at_load(large: bool) -> None:
    """Each mistake is one error naming the specs as name=value, whether the space is enumerated at load or
    only sampled (1,000,000 x 36 sequences); a canonical spec that is forbidden would drop architectures."""
    for flaw, message in [
        ("forbidden", r"canonical\(\) of the allowed \{op0=conv, w0=(8|16), .*\} is \{op0=pool, w0=16, .*\}, which a "
         "forbidden combination rules out"),
        ("unstable", r"canonical form is not stable: \{op0=.*, w1=(8|16)\b.*\} -> \{op0=.*, w1=(16|8)\b"),
        ("undecodable", r"canonical\(\) of \{op0=.*\} gave a spec that does not encode: .*w1"),
    ]:  # fmt: skip
        with pytest.raises(SpaceError, match=message):
            Constraints.of(Flawed(flaw=flaw, large=large))


def test_a_strategy_proposing_outside_a_listed_canonical_form_is_told_once(tmp_path: Path) -> None:
    """A plugin strategy that ignored the canonical form had one architecture trained as several, silently."""
    from l2l.controllers import Proposal
    from l2l.controllers.base import noncanonical
    from l2l.runs.search import NoticeEvent

    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    said: list[str] = []
    ref = f"{Path(__file__).resolve()}:Layers"
    config = SearchConfig(space=ref, space_options={"canonical": True}, strategy="random", children=6, batch=2)
    search = Search.start(store, config, listener=lambda e: said.append(e.text) if isinstance(e, NoticeEvent) else None)
    pooled = (1, 1, 0, 0)  # a pooling first layer with width 16: the space writes it with width 8
    assert noncanonical(search.controller, [Proposal((0, 0, 0, 0), 0.0, 0.0, 0)]) is None
    search.controller.propose = lambda n: [Proposal(pooled, 0.0, 0.0, 0) for _ in range(n)]  # type: ignore[method-assign]
    search.run()
    assert said == [
        "strategy RandomController proposed [1, 1, 0, 0], which the space writes [1, 0, 0, 0]: sequences of one "
        "architecture are trained apart and ranked as one (a strategy proposes canonical sequences, "
        "self.constraints.canonical; docs/controllers.md)"
    ]
