"""Regularized evolution and the NAS-Bench-201 tabular space (issue 7, first part)."""

from __future__ import annotations

from pathlib import Path

import pytest

from l2l.controllers import ControllerError, EvolutionController, make_controller
from l2l.search_spaces import Context, Decision, SpaceError, load_space
from l2l.search_spaces.nb201 import OPS, NB201Space, arch_str, load_table

DECISIONS = [
    Decision.categorical("a", ["0", "1", "2", "3"]),
    Decision.anchor("s0", 0),
    Decision.anchor("s1", 1),
    Decision.categorical("b", ["x", "y"]),
]


def test_table_is_complete_and_lookup_matches_the_csv() -> None:
    table = load_table()
    assert len(table) == 15625
    space = load_space("nb201")
    spec = space.decode((3, 3, 3, 1, 2, 3))
    key = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert space.describe(spec) == key
    result = space.evaluate(spec, Context())
    assert result.reward == pytest.approx(table[key]["c10_val_12ep"] / 100)
    assert result.test["test_acc"] == pytest.approx(0.9437, abs=1e-4)


def test_optimum_is_the_best_validation_cell() -> None:
    space = NB201Space()
    best = space.evaluate(space.decode(space.optimum()), Context())
    assert best.reward == pytest.approx(max(r["c10_val_12ep"] for r in load_table().values()) / 100)
    assert 100 * best.test["test_acc"] == pytest.approx(94.37, abs=0.01)
    c100 = NB201Space(dataset="cifar100")
    assert c100.evaluate(c100.decode(c100.optimum()), Context()).reward > 0.6
    with pytest.raises(SpaceError, match="unknown nb201 dataset 'mnist'"):
        load_space("nb201", {"dataset": "mnist"})


def test_arch_str_covers_every_op_combination_once() -> None:
    assert arch_str(["none"] * 6) in load_table()
    assert len({arch_str([OPS[(i * 7 + k) % 5] for k in range(6)]) for i in range(5)}) == 5


def test_evolution_fills_population_then_mutates_one_decision() -> None:
    c = EvolutionController(DECISIONS, seed=0, population=4, sample=2)
    first = c.propose(4)
    c.update(first, [0.1, 0.9, 0.2, 0.3])
    children = c.propose(50)
    parents = [p.tokens for p in first]
    for child in children:
        distances = [sum(a != b for a, b in zip(child.tokens, p, strict=True)) for p in parents]
        assert 1 in distances  # one token away from the member it was mutated from
    c.update(children[:4], [1.0, 1.0, 1.0, 1.0])
    assert len(c.population) == 4 and all(r == 1.0 for _, r in c.population)  # the oldest left first


def test_evolution_beats_random_on_the_toy_space() -> None:
    space = load_space("toy")
    target = space.optimum()

    def found(strategy: str, seed: int) -> int:
        c = make_controller(
            strategy, space.decisions(), seed, {"population": 20, "sample": 5} if strategy == "evolution" else {}
        )
        for n in range(1, 3001):
            p = c.propose(1)
            if p[0].tokens == target:
                return n
            c.update(p, [space.evaluate(space.decode(p[0].tokens), Context()).reward])
        return 3001

    evo = sorted(found("evolution", s) for s in range(5))
    rnd = sorted(found("random", s) for s in range(5))
    assert evo[2] < 1000 and evo[2] * 3 < rnd[2]


def test_evolution_state_round_trip_and_settings() -> None:
    a = EvolutionController(DECISIONS, seed=1, population=3, sample=2)
    for _ in range(3):
        ps = a.propose(2)
        a.update(ps, [float(sum(p.tokens)) for p in ps])
    b = EvolutionController(DECISIONS, seed=9, population=3, sample=2)
    b.load_bytes(a.to_bytes())
    assert a.propose(5) == b.propose(5)
    with pytest.raises(ControllerError, match="population >= 2"):
        EvolutionController(DECISIONS, 0, population=1)
    with pytest.raises(ControllerError, match=r"unknown evolution setting\(s\) \['pop'\]"):
        make_controller("evolution", DECISIONS, 0, {"pop": 3})


def test_benchmark_merge_keeps_other_strategies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from benchmarks import nb201 as harness

    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    protocol = {"dataset": "cifar10", "seeds": 3, "seed_offset": 1000, "budgets": [25, 50]}
    old = {**protocol, "settings": {"lr": 0.01}, "results": {"tpe": {"25": 1}, "reinforce": {"25": 2}}, "curves": {}}
    (tmp_path / "nb.json").write_text(json.dumps(old))
    new = {**protocol, "settings": {}, "results": {}, "curves": {}}
    out = harness.merged("nb", new)
    assert out["results"] == old["results"]  # this run's strategies replace their entries as they finish
    assert out["settings_by_strategy"] == {"tpe": {"lr": 0.01}, "reinforce": {"lr": 0.01}}
    assert harness.merged("missing", new) is new
    with pytest.raises(ValueError, match=r"other seeds \(3, not 100\)"):
        harness.merged("nb", {**new, "seeds": 100})
