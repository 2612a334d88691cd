"""Identities: token sequences a space says are one candidate are proposed once (`SearchSpace.identity`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from l2l.controllers import make_controller
from l2l.optsearch.simplify import functional_hash
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Spec, load_space
from l2l.search_spaces.constraints import identity_of
from l2l.search_spaces.optimizer import OptimizerSpace
from tests.conftest import PLUGINS
from tests.test_search import check_interrupt_and_resume

TWINS = f"{PLUGINS / 'spaces.py'}:Twins"


def identities(store: Store, run: int) -> list[str]:
    return [f"{dict(c.spec['values'])['a']}-{dict(c.spec['values'])['b']}" for c in store.children(run)]


@pytest.mark.parametrize("strategy", ["reinforce", "reinforce+screen", "random", "evolution"])
def test_no_identity_twice_until_every_one_was_proposed_then_repeats_are_counted(tmp_path: Path, strategy: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    settings = {"screen_warmup": 4} if "screen" in strategy else {}
    config = SearchConfig(space=TWINS, strategy=strategy, children=16, batch=4, seed=1, controller=settings)
    run = Search.start(store, config).run()
    seen = identities(store, run)
    # a strategy sampling with replacement gives up after a bounded number of draws: the first 8 of the 12 are
    # new; REINFORCE never samples a rejected sequence again, so it proposes all 12 before any repeat
    first = 12 if strategy.startswith("reinforce") else 8
    assert len(set(seen[:first])) == first, seen
    assert len(set(seen)) <= 12
    last = store.updates(run)[-1].extra
    assert last["identities"] == len(set(seen))
    assert last["identity_repeats"] == len(seen) - len(set(seen)) >= 4
    assert last["identity_rejected"] > 0


@pytest.mark.parametrize("strategy", ["gp", "tpe", "evolution", "random"])
def test_on_an_exact_space_no_sequence_is_proposed_twice(strategy: str) -> None:
    """An exact reward is worth having once. Optuna's GP, which keeps asking for the optimum it has found,
    is sent somewhere new (uniformly among the allowed sequences) rather than repeating it."""
    from l2l.search_spaces import Context
    from l2l.search_spaces.constraints import Constraints

    space = load_space("toy")
    assert space.exact_rewards()
    c = make_controller(strategy, space.decisions(), 0, {}, Constraints.of(space), exact=True)
    seen = []
    for _ in range(25):  # without the uniform fallback, the GP's 25th proposal repeated one
        proposals = c.propose(1)
        c.update(proposals, [float(space.evaluate(space.decode(p.tokens), Context(seed=0)).reward) for p in proposals])
        seen += [p.tokens for p in proposals]
    assert len(set(seen)) == 25


def test_a_checkpoint_of_a_run_without_identities_restores_under_one() -> None:
    """A run on an exact space interrupted before its tokens became the identity: its lean checkpoint counted no
    identities; the identities are rebuilt from its children, not checked against that count. A checkpoint of a
    run that had an identity is still checked."""
    from l2l.controllers import ControllerError
    from l2l.controllers.unique import Distinct

    old = Distinct()
    old.key = tuple
    old.load_state_dict({"rejected": 0, "repeats": 0, "n_keys": 0})
    old.restore([(0, 1), (1, 0), (0, 1)], "random")
    assert old.keys == {(0, 1), (1, 0)}
    keyed = Distinct()
    keyed.key = tuple
    keyed.load_state_dict({"rejected": 0, "repeats": 0, "n_keys": 3, "keyed": True})
    with pytest.raises(ControllerError, match="checkpoint had proposed 3 identities but the ledger's children have 2"):
        keyed.restore([(0, 1), (1, 0)], "random")


@pytest.mark.parametrize(
    ("strategy", "at"), [("reinforce", 13), ("random", 13), ("evolution", 13), ("reinforce", 21), ("ppo", 21)]
)
def test_a_resumed_run_rebuilds_its_identities_from_the_children(tmp_path: Path, strategy: str, at: int) -> None:
    """Interrupted at child 13 (of 25, past the 12 identities: rejections and repeats on both sides), or at 21,
    after all 24 sequences were proposed or rejected: a rejected one proposed then is a child like any other."""
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    config = SearchConfig(space=TWINS, strategy=strategy, children=25, batch=4, seed=3)
    check_interrupt_and_resume(store, config, at=at)


def test_the_optimizer_space_identity_is_the_functional_hash() -> None:
    space = OptimizerSpace(units=2)
    identity = identity_of(space)
    assert identity is not None
    same = [("u1_op1", "g"), ("u1_op2", "m"), ("u1_unary1", "identity"), ("u1_unary2", "identity")]
    rest = [("u2_op1", "u1"), ("u2_op2", "one"), ("u2_unary1", "identity"), ("u2_unary2", "identity")]
    a = Spec("optimizer", (*same, ("u1_binary", "keep"), *rest, ("u2_binary", "mul"), ("decay", "none")))
    b = Spec("optimizer", (*same[:1], ("u1_op2", "g2"), *same[2:], ("u1_binary", "keep"), *rest, ("u2_binary", "keep"),
                           ("decay", "none")))  # fmt: skip
    assert space.encode(a) != space.encode(b)
    assert identity(space.encode(a)) == identity(space.encode(b)) == functional_hash(space.rule_of(a))
    assert identity_of(load_space("optimizer", {"units": 2, "distinct": False})) is None


def test_reinforce_over_rules_proposes_each_update_once() -> None:
    """A reward that pulls the policy onto rules of one kind (plain gradient, last unit keeping its first input):
    without identities the same update comes back under other tokens; with them, never, and the rejected
    samples are counted."""
    space = load_space("optimizer", {"units": 2})
    identity = identity_of(space)
    assert identity is not None

    def hashes(with_identity: bool) -> tuple[list[object], dict[str, float]]:
        c = make_controller("reinforce", space.decisions(), 0, identity=identity if with_identity else None)
        out, extra = [], {}
        for _ in range(12):
            batch = c.propose(4)
            rules = [space.decode(p.tokens) for p in batch]
            rewards = [float(r["u2_binary"] == "keep") + float(r["u1_op1"] == "g") for r in rules]
            extra = dict(c.update(batch, rewards).extra)
            out += [identity(p.tokens) for p in batch]
        return out, extra

    before, _ = hashes(False)
    after, extra = hashes(True)
    assert max(Counter(before).values()) > 1, "the reward should make the policy write one update twice"
    assert len(set(after)) == len(after) == extra["identities"] == 48
    assert extra["identity_rejected"] > 0 and extra["identity_repeats"] == 0


def test_an_optimizer_search_trains_distinct_rules_only(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    options: dict[str, Any] = {"units": 1, "epochs": 1, "lrs": "0.01"}
    run = Search.start(
        store, SearchConfig(space="optimizer", space_options=options, children=16, batch=4, seed=0)
    ).run()
    space = OptimizerSpace(**options)
    hashes = [functional_hash(space.rule_of(Spec.from_json(c.spec))) for c in store.children(run)]
    assert len(set(hashes)) == len(hashes) == 16


def test_the_identity_is_probed_on_an_allowed_sequence() -> None:
    """A space whose first sequence is forbidden (and whose identity refuses it) still gets its identity."""
    from tests.plugins.spaces import Twins

    class NoZeros(Twins):
        def forbidden(self) -> list[dict[str, Any]]:
            return [{"a": 0, "echo": "x", "b": 0}]

        def identity(self, spec: Spec) -> str | None:
            if (spec["a"], spec["echo"], spec["b"]) == (0, "x", 0):
                raise ValueError("a forbidden candidate has no identity")
            return super().identity(spec)

    key = identity_of(NoZeros())
    assert key is not None and key((1, 0, 2)) == key((1, 1, 2)) == "1-2" != key((0, 1, 0))


@pytest.mark.parametrize("strategy", ["reinforce", "reinforce+screen", "random", "evolution", "tpe"])
def test_sequences_noted_as_proposed_are_not_proposed_again(strategy: str) -> None:
    """A resumed asynchronous search tells its restored strategy of the children proposed after the checkpoint
    (`Controller.note_proposed`): on an exact space those sequences are not proposed again."""
    from l2l.controllers import Proposal
    from l2l.search_spaces import Decision

    decisions = [Decision("a", "categorical", ("0", "1", "2")), Decision("b", "categorical", ("0", "1"))]
    every = {(a, b) for a in range(3) for b in range(2)}
    c = make_controller(strategy, decisions, 0, {}, exact=True)
    noted = [(0, 0), (1, 1), (2, 0)]
    c.note_proposed([Proposal(t, 0.0, 0.0, 0) for t in noted])
    proposed = [p.tokens for p in c.propose(3)]
    assert sorted(proposed) == sorted(every - set(noted))
