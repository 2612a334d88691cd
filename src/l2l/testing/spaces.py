"""The contract every search space passes: subclass `SpaceContract` in the plugin's own test file.

    import pytest
    from l2l.testing.spaces import Expected, SpaceContract
    from my_plugin import MySpace

    class TestMySpace(SpaceContract):
        @pytest.fixture
        def space_class(self) -> type[MySpace]:
            return MySpace

        @pytest.fixture
        def fast_options(self) -> dict[str, object]:
            return {"epochs": 1}  # options that make evaluate take seconds, not minutes

        @pytest.fixture
        def expected(self) -> Expected:
            return Expected(curves=("val_acc",), val_acc=True)  # what its results hold besides a reward

It checks what a search relies on: decisions a controller can sample, token sequences that decode to
JSON-serializable specs and encode back, options kept so a worker or a resumed run can rebuild the
space and unknown ones refused, and an evaluation that gives a finite result, the same one for the
same spec and seed, also on a worker's copy of the space.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from l2l.search_spaces import Context, Decision, Result, SearchSpace, SpaceError, Spec, token_sizes, validate_space
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.registry import unknown_options
from l2l.search_spaces.results import checked_result
from l2l.testing import one_torch_thread

UNKNOWN_OPTION = "zz_no_such_option"


@dataclass(frozen=True)
class Expected:
    """What a space's results hold besides a finite reward; `SpaceContract.expected` returns one."""

    curves: tuple[str, ...] = ()  # per-epoch curves with at least one finite point
    costs: tuple[str, ...] = ()  # cost entries that are > 0 (e.g. "params")
    test: tuple[str, ...] = ()  # test metrics that are present (e.g. "test_acc")
    val_acc: bool = False  # val_acc is set and in [0, 1]
    # a child may fail when its error names one of these (a random update rule may diverge): the contract
    # then draws another candidate, up to `SpaceContract.draws` of them
    may_fail: tuple[str, ...] = ()


def random_tokens(space: SearchSpace, rng: random.Random) -> tuple[int, ...]:
    """A uniformly random token sequence for ``space``, among those a controller may propose (no forbidden
    combination; a canonical sequence where the space has a canonical form)."""
    constraints = Constraints.of(space)
    if constraints is None:
        return tuple(rng.randrange(k) for k in token_sizes(space.decisions()))
    prefix: list[int] = []
    for _ in token_sizes(space.decisions()):
        counts = constraints.branch_counts(prefix)
        prefix.append(rng.choices(range(len(counts)), weights=counts)[0])
    return tuple(prefix)


def every_candidate(space: SearchSpace, limit: int) -> list[tuple[int, ...]] | None:
    """Every token sequence a controller may propose for ``space`` (canonical where the space has a canonical
    form), in order; None when there are more than ``limit``."""
    sizes = token_sizes(space.decisions())
    if math.prod(sizes) > 64 * limit:  # far too many to list (constraints cut a few, not that many)
        return None
    constraints = Constraints.of(space)
    every: list[tuple[int, ...]] = []
    for tokens in itertools.product(*(range(k) for k in sizes)):
        if constraints is None or (constraints.valid(tokens) and constraints.canonical(tokens) == tokens):
            every.append(tokens)
            if len(every) > limit:
                return None
    return every


def check_graph(graph: Any) -> None:
    """Assert ``graph`` is what `l2l plot arch` draws: labelled nodes and edges between them."""
    assert isinstance(graph, dict) and set(graph) >= {"nodes", "edges"}, f"graph must have nodes and edges: {graph!r}"
    nodes, edges = graph["nodes"], graph["edges"]
    assert nodes and all(isinstance(n, str) for n in nodes), f"graph nodes must be labels: {nodes!r}"
    for edge in edges:
        assert len(edge) == 3 and isinstance(edge[2], str), f"an edge is [from, to, label]: {edge!r}"
        assert all(isinstance(i, int) and 0 <= i < len(nodes) for i in edge[:2]), f"edge {edge!r} outside the nodes"
    json.dumps(graph, allow_nan=False)


def check_result(result: Result, expected: Expected) -> None:
    """Assert ``result`` is a finished child with a finite reward and what ``expected`` asks for."""
    assert isinstance(result, Result), f"evaluate returned {type(result).__name__}, not a Result"
    assert result.ok and math.isfinite(result.reward), f"not a finished child with a finite reward: {result!r}"
    for name in expected.curves:
        curve = result.curves.get(name, [])
        assert len(curve) >= 1 and all(math.isfinite(x) for x in curve), f"curve {name!r} is {curve!r}"
    for name in expected.costs:
        assert result.cost.get(name, 0) > 0, f"cost {name!r} is {result.cost.get(name)!r}"
    for name in expected.test:
        assert name in result.test, f"test metric {name!r} missing from {dict(result.test)}"
    if expected.val_acc:
        assert result.val_acc is not None and 0.0 <= result.val_acc <= 1.0, f"val_acc is {result.val_acc!r}"


class SpaceContract:
    """Tests every search space passes. Override the `space_class` fixture, and `fast_options` and `expected`
    where they apply."""

    samples = 50  # random token sequences per round-trip check
    draws = 20  # candidates evaluate may try before one must succeed (with `Expected.may_fail`)
    evaluations = 3  # distinct candidates evaluated at least (a space that fails on some is caught)
    evaluate_all_up_to = 32  # a space with at most this many candidates has every one evaluated

    @pytest.fixture(autouse=True)
    def one_thread(self) -> Iterator[None]:
        """Children train on one thread, as the executors run them (`Context.threads`)."""
        with one_torch_thread():
            yield

    @pytest.fixture
    def space_class(self) -> type[SearchSpace]:
        """The space under test; a subclass must override this."""
        raise NotImplementedError("override the `space_class` fixture with the SearchSpace subclass under test")

    @pytest.fixture
    def fast_options(self) -> dict[str, Any]:
        """Options that make `evaluate` fast (one epoch, a small network); none by default."""
        return {}

    @pytest.fixture
    def expected(self) -> Expected:
        """What the space's results hold besides a finite reward."""
        return Expected()

    @pytest.fixture
    def space(self, space_class: type[SearchSpace], fast_options: dict[str, Any]) -> SearchSpace:
        """The space built with the fast options."""
        return space_class(**fast_options)

    def test_decisions_are_well_formed(self, space: SearchSpace) -> None:
        validate_space(space)  # names, kinds, anchors, a choice to make, decode/encode of random tokens
        assert isinstance(space.name, str) and space.name, (
            f'class {type(space).__name__} sets no name: give it `name = "..."`, the name searches use'
        )
        decisions = list(space.decisions())
        assert all(isinstance(d, Decision) for d in decisions), decisions
        assert list(space.decisions()) == decisions, "decisions() must give the same decisions every time"

    def test_tokens_round_trip_through_spec_and_json(self, space: SearchSpace) -> None:
        rng = random.Random(1)
        optimum = space.optimum()
        tokens_list = [random_tokens(space, rng) for _ in range(self.samples)]
        for tokens in tokens_list + ([tuple(optimum)] if optimum is not None else []):
            spec = space.decode(tokens)
            assert isinstance(spec, Spec) and spec.space == space.name, spec
            again = Spec.from_json(json.loads(json.dumps(spec.to_json(), allow_nan=False)))
            assert again == spec, f"spec does not survive JSON: {spec!r} -> {again!r}"
            assert tuple(space.encode(again)) == tokens, f"tokens {list(tokens)} do not round-trip through {spec!r}"
            assert isinstance(space.describe(spec), str)
            check_graph(space.graph(spec))

    def test_forbidden_combinations_and_canonical_form_hold_together(self, space: SearchSpace) -> None:
        constraints = Constraints.of(space)  # raises on a name or value that does not exist, or nothing left
        if constraints is None:
            return
        assert constraints.count() >= 1
        rng = random.Random(3)
        for _ in range(self.samples):
            tokens = random_tokens(space, rng)
            same = constraints.canonical(tokens)
            spec, canonical = space.decode(tokens).as_dict(), space.decode(same).as_dict()
            assert constraints.valid(tokens), f"a strategy could propose {spec}, which is forbidden"
            assert constraints.valid(same), f"canonical() of the allowed {spec} is {canonical}, which is forbidden"
            again = space.decode(constraints.canonical(same)).as_dict()
            assert again == canonical, f"canonical form is not stable: {canonical} -> {again}"
            if constraints.enumerated:  # proposed as one sequence per architecture: its canonical one
                assert same == tokens, f"an enumerated space proposes canonical specs; {spec} is not: {canonical}"
            assert not any(all(spec[k] == v for k, v in c.items()) for c in space.forbidden()), spec

    def test_decode_rejects_malformed_tokens(self, space: SearchSpace) -> None:
        tokens = random_tokens(space, random.Random(2))
        for bad in (tokens[:-1], (*tokens, 0)):
            with pytest.raises(SpaceError):
                space.decode(bad)
        sizes = token_sizes(space.decisions())
        with pytest.raises(SpaceError):
            space.decode((sizes[0], *tokens[1:]))

    def test_options_are_kept_and_rebuild_the_space(
        self, space_class: type[SearchSpace], fast_options: dict[str, Any], space: SearchSpace
    ) -> None:
        """A run stores `options` as JSON and rebuilds the space from them on workers and on resume."""
        stored = json.loads(json.dumps(space.options, allow_nan=False))
        for key, value in fast_options.items():
            assert space.options.get(key) == value, f"option {key!r} is not kept in `options`: {space.options}"
        rebuilt = space_class(**stored)
        assert rebuilt.options == space.options
        assert list(rebuilt.decisions()) == list(space.decisions())

    def test_unknown_option_is_refused(self, space_class: type[SearchSpace], fast_options: dict[str, Any]) -> None:
        unknown, _ = unknown_options(space_class, {**fast_options, UNKNOWN_OPTION: 1})
        if UNKNOWN_OPTION in unknown:
            return  # refused by name when the space is loaded: its constructor's parameters do not take it
        try:
            space_class(**fast_options, **{UNKNOWN_OPTION: 1})
        except (TypeError, ValueError) as exc:
            assert UNKNOWN_OPTION in str(exc), f"the error does not name the unknown option: {exc}"
        else:
            pytest.fail(
                f"{space_class.__name__} accepted the unknown option {UNKNOWN_OPTION!r}: declare the space's options "
                "as keyword parameters of its __init__"
            )

    def test_evaluate_gives_a_finite_result(self, space: SearchSpace, expected: Expected) -> None:
        """`evaluations` distinct random candidates, or every one in a space of at most `evaluate_all_up_to`,
        each give a result the search records as the space meant (a failure only where `Expected.may_fail`
        allows it, saying why), and one of the first `draws` trains; a space that breaks on some candidates is
        caught here, not in a search (in a larger space, where one of the few drawn is among them)."""
        rng = random.Random(2)
        seen: set[tuple[int, ...]] = set()
        trained: Result | None = None
        every = every_candidate(space, self.evaluate_all_up_to)
        for tokens in every or (random_tokens(space, rng) for _ in range(self.draws)):
            if tokens in seen and trained is not None:
                continue
            seen.add(tokens)
            spec = space.decode(tokens)
            raw = space.evaluate(spec, Context(child=0, seed=1))
            assert isinstance(raw, Result), f"evaluate returned {type(raw).__name__}, not a Result ({spec})"
            result = checked_result(raw)  # what the search records, with the reason when it does not fit
            fits = raw.status == "failed" or result.status != "failed"
            assert fits, f"the search would record this child as failed: {result.error} ({spec})"
            json.dumps(result.to_json(), allow_nan=False)
            if result.status == "failed" and expected.may_fail:
                assert result.error and any(w in result.error for w in expected.may_fail), result.error
            else:
                check_result(result, expected)  # a failure not allowed here fails the contract, with its reason
                missing = [k for k in space.cost_metrics if k not in result.cost]  # what a mnas reward may name
                assert not missing, f"declared costs {missing} not reported (SearchSpace.cost_metrics): {result.cost}"
                trained = trained or result
            if every is None and trained is not None and len(seen) >= self.evaluations:
                break
        assert trained is not None, f"none of {len(seen)} candidates trained: {result.error}"

    def test_same_spec_same_seed_same_result(self, space_class: type[SearchSpace], space: SearchSpace) -> None:
        """Also on a copy rebuilt from the options and given the shared data, as the Ray executor does, and what
        the run stored of the space's measurements (`pinned_data`, JSON), as resume and retraining do."""
        spec = space.decode(tuple(0 for _ in token_sizes(space.decisions())))
        here = space.evaluate(spec, Context(child=0, seed=3))
        worker = space_class(**json.loads(json.dumps(space.options)))
        worker.use_pinned_data(json.loads(json.dumps(space.pinned_data(), allow_nan=False)))
        worker.use_shared_data(space.shared_data())
        there = worker.evaluate(Spec.from_json(json.dumps(spec.to_json())), Context(child=0, seed=3))
        for field in ("status", "reward", "val_acc", "val_loss", "test", "curves"):
            a, b = getattr(here, field), getattr(there, field)
            assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), f"{field}: {a!r} != {b!r}"

    def test_shared_network_computes_what_stand_alone_children_compute(self, space: SearchSpace) -> None:
        """A space offering weight sharing (`SearchSpace.shared_network`): it covers every decision, and a
        spec bound to the shared weights computes the stand-alone child's loss and gradients."""
        try:
            offered = space.shared_network()
        except SpaceError as exc:  # not with these options (e.g. hashed layers), and it says why
            pytest.skip(str(exc))
        if offered is None:
            pytest.skip(f"space {space.name!r} offers no shared network")
        from l2l.testing.sharing import check_shared_network

        check_shared_network(space)
