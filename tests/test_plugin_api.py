"""The plugin API: decisions, specs, decoding, the registry and validation of malformed plugins."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l2l.search_spaces import (
    Context,
    Decision,
    PluginError,
    Result,
    SearchSpace,
    SpaceError,
    Spec,
    available_spaces,
    load_space,
    load_space_class,
    validate_space,
)
from l2l.testing.spaces import Expected, SpaceContract, every_candidate
from tests.conftest import PLUGINS
from tests.plugins.spaces import Duplicate, Flaky, Forgetful, Lossy, Slow, Unseeded

values = st.one_of(
    st.text(min_size=0, max_size=8),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(0, 1), max_size=6).map(tuple),
)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=6), values), max_size=8))
def test_spec_survives_json_round_trip(pairs: list[tuple[str, object]]) -> None:
    spec = Spec("s", tuple(pairs))  # type: ignore[arg-type]
    assert Spec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert Spec.from_json(json.dumps(spec.to_json())) == spec


def test_spec_lookup_names_missing_decision() -> None:
    spec = Spec("s", (("a", "x"),))
    assert spec["a"] == "x"
    with pytest.raises(KeyError, match="no decision 'b'"):
        spec["b"]
    with pytest.raises(SpaceError, match="malformed spec JSON"):
        Spec.from_json({"space": "s"})


def test_decision_widths() -> None:
    assert Decision.categorical("a", [1, 2, 3]).width == 1
    assert Decision.categorical("a", [1, 2, 3]).options == (1, 2, 3)
    assert Decision.anchor("s", 3).width == 3
    assert Decision.anchor("s", 3).n_choices == 2


def test_decode_checks_length_and_range() -> None:
    space = load_space("toy")
    n = sum(d.width for d in space.decisions())
    with pytest.raises(SpaceError, match=f"expects {n} tokens, got 2"):
        space.decode([0, 0])
    bad = [0] * n
    bad[0] = 99
    with pytest.raises(SpaceError, match="token 99 at position 0 out of range for decision 'op_0'"):
        space.decode(bad)


def test_decode_encode_round_trip_with_anchors() -> None:
    space = load_space("toy", {"layers": 4})
    tokens = space.optimum()
    assert tokens is not None
    spec = space.decode(tokens)
    assert space.encode(spec) == tokens
    assert isinstance(spec["skip_3"], tuple) and len(spec["skip_3"]) == 3


def test_builtins_are_registered_through_entry_points() -> None:
    assert {"toy", "mlp"} <= set(available_spaces())


CLASH = """
from l2l.search_spaces import Decision, Result, SearchSpace


class Impostor(SearchSpace):
    name = "mlp"
    description = "IMPOSTOR"

    def decisions(self):
        return [Decision.categorical("a", [1, 2])]

    def evaluate(self, spec, ctx):
        return Result(reward=0.123)
"""


def _install_space_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, module: str, names: list[str]) -> None:
    (root / f"{module}.py").write_text(CLASH)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = "".join(f"{n} = {module}:Impostor\n" for n in names)
    (info / "entry_points.txt").write_text(f"[l2l.search_spaces]\n{lines}")
    monkeypatch.syspath_prepend(str(root))


def test_a_plugin_cannot_take_a_builtin_name_and_two_plugins_cannot_share_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.search_spaces.mlp import MLPSpace
    from l2l.search_spaces.registry import shadowed

    _install_space_plugin(tmp_path, monkeypatch, "clash_one", ["mlp", "both"])
    _install_space_plugin(tmp_path, monkeypatch, "clash_two", ["both"])
    assert load_space_class("mlp") is MLPSpace  # the built-in keeps its name
    assert shadowed() == [("mlp", "clash_one:Impostor")]
    listed = " ".join(CliRunner().invoke(app, ["spaces", "list"], env={"COLUMNS": "300"}).output.split())
    assert "plugin clash_one:Impostor is not used: 'mlp' is a built-in space" in listed
    with pytest.raises(PluginError, match=r"'both' is registered by more than one plugin \(clash_"):
        load_space_class("both")


def test_unknown_space_lists_known_ones() -> None:
    with pytest.raises(PluginError, match=r"unknown search space 'nope'; known: .*mlp.*toy"):
        load_space_class("nope")


def test_space_from_file() -> None:
    space = load_space(f"{PLUGINS / 'spaces.py'}:Slow", {"delay": 0.0})
    assert space.name == "slow"
    assert space.options == {"delay": 0.0}


def test_space_from_an_importable_module_as_an_entry_point_names_it() -> None:
    """`--space mypkg.spaces:ToyBoost` (the target of a package's entry point) was an unknown space."""
    space = load_space("tests.plugins.spaces:Slow", {"delay": 0.0})
    assert space.name == "slow" and type(space).__module__ == "tests.plugins.spaces"
    with pytest.raises(PluginError, match=r"module tests\.plugins\.spaces has no Sloww"):
        load_space("tests.plugins.spaces:Sloww")
    with pytest.raises(PluginError, match=r"importing no_such_pkg.spaces failed: ModuleNotFoundError"):
        load_space("no_such_pkg.spaces:Slow")
    with pytest.raises(PluginError, match=r"is not a subclass of l2l\.search_spaces\.SearchSpace"):
        load_space("tests.plugins.spaces:NotASpace")


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("Empty", "search space 'empty': it declares no decisions"),
        ("Duplicate", r"search space 'duplicate': duplicate decision names \['a'\]"),
        ("Lossy", "search space 'lossy': decode does not round-trip"),
        ("DecodeRaises", r"'decode_raises': decode\(\[0, 0\]\) raised ValueError\('my decode is broken'\)"),
        ("BadAnchor", "search space 'bad_anchor': anchor 'skip' has n_prev=2 but 0 anchors come before it"),
        ("NoName", "class NoName sets no `name`"),
        ("NotASpace", "is not a subclass of l2l.search_spaces.SearchSpace"),
        ("Missing", r"defines no 'Missing'; search spaces there: \[.*'Slow'"),
    ],
)
def test_malformed_plugins_are_rejected_with_their_name(cls: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        load_space(f"{PLUGINS / 'spaces.py'}:{cls}")


def test_missing_plugin_file(tmp_path: object) -> None:
    with pytest.raises(PluginError, match="does not exist"):
        load_space("no/such/file.py:Space")


def test_plugin_that_fails_to_import(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "broken.py"  # type: ignore[operator]
    path.write_text("raise ImportError('missing dependency xyz')\n")
    with pytest.raises(PluginError, match=r"importing .*broken.py.* failed: ImportError: missing dependency xyz"):
        load_space(f"{path}:Whatever")


def test_bad_space_options_name_the_space() -> None:
    with pytest.raises(PluginError, match="search space 'toy': unknown option\\(s\\) colour; known: layers, "):
        load_space("toy", {"colour": "red"})
    with pytest.raises(SpaceError, match="toy space needs layers >= 1"):
        load_space("toy", {"layers": 0})


def test_validate_accepts_every_registered_space() -> None:
    for name in available_spaces():
        validate_space(load_space(name, validate=False))


class TestSlowPluginPassesTheContract(SpaceContract):
    """What a plugin's own test file holds: the space contract, subclassed, over the plugin's space."""

    @pytest.fixture
    def space_class(self) -> type[SearchSpace]:
        return Slow

    @pytest.fixture
    def fast_options(self) -> dict[str, object]:
        return {"delay": 0.0}

    @pytest.fixture
    def expected(self) -> Expected:
        return Expected(val_acc=True)


def test_the_space_contract_catches_broken_plugins() -> None:
    contract = SpaceContract()
    with pytest.raises(PluginError, match="duplicate decision names"):
        contract.test_decisions_are_well_formed(Duplicate())
    with pytest.raises(AssertionError, match=r"tokens \[\d, 1\] do not round-trip"):  # Lossy drops the second token
        contract.test_tokens_round_trip_through_spec_and_json(Lossy())

    class Lenient(Flaky):
        def __init__(self, **options: object) -> None:  # takes anything, and says nothing
            super().__init__(**options)

    with pytest.raises(pytest.fail.Exception, match="Lenient accepted the unknown option 'zz_no_such_option'"):
        contract.test_unknown_option_is_refused(Lenient, {})
    contract.test_unknown_option_is_refused(Flaky, {})  # no constructor of its own: it takes no options
    with pytest.raises(PluginError, match=r"search space 'flaky': unknown option\(s\) epochs; known: none"):
        load_space(f"{PLUGINS / 'spaces.py'}:Flaky", {"epochs": 5})
    with pytest.raises(AssertionError, match="option 'width' is not kept in `options`"):
        contract.test_options_are_kept_and_rebuild_the_space(Forgetful, {"width": 5}, Forgetful(width=5))
    with pytest.raises(AssertionError, match=r"^reward: "):
        contract.test_same_spec_same_seed_same_result(Unseeded, Unseeded(delay=0.0))

    class SometimesBroken(Flaky):  # trains on two of its three candidates, raises on the third
        def decisions(self) -> list[Decision]:
            return [Decision.categorical("x", ["good", "ok", "boom"])]

    # its first draw trains: the contract stopped there and passed a space that fails a third of its children
    with pytest.raises(RuntimeError, match="child exploded on purpose"):
        contract.test_evaluate_gives_a_finite_result(SometimesBroken(), Expected(val_acc=True))

    class OneBadCorner(Flaky):  # 18 candidates; only depth 3 with width 'w6' raises: three random draws miss it
        def decisions(self) -> list[Decision]:
            return [Decision.categorical("depth", [1, 2, 3]), Decision.categorical("x", [f"w{i}" for i in range(6)])]

        def evaluate(self, spec: Spec, ctx: Context) -> Result:
            if (spec["depth"], spec["x"]) == (3, "w5"):
                raise RuntimeError("the corner case exploded")
            return Result(reward=0.5, val_acc=0.5, val_loss=0.1)

    assert len(every_candidate(OneBadCorner(), 32) or []) == 18  # a space this small is evaluated whole
    with pytest.raises(RuntimeError, match="the corner case exploded"):
        contract.test_evaluate_gives_a_finite_result(OneBadCorner(), Expected(val_acc=True))
    assert every_candidate(OneBadCorner(), 17) is None  # a larger one: random draws
    contract.evaluate_all_up_to = 17
    contract.test_evaluate_gives_a_finite_result(OneBadCorner(), Expected(val_acc=True))


STRATEGY = """
from l2l.controllers import RandomController


class Sweep(RandomController):
    '''Random sampling, two at a time.

    (what `l2l strategies list` says of it is the first line)'''

    default_batch = 2


def not_a_controller(decisions, seed, settings):
    return "nope"


class Tuples(RandomController):
    def propose(self, n):
        return [tuple(p.tokens) for p in super().propose(n)]


class Silent(RandomController):
    def update(self, proposals, rewards):
        super().update(proposals, rewards)


class Crashing(RandomController):
    def update(self, proposals, rewards):
        return {}["missing"]
"""


def install_strategies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`STRATEGY`'s classes as an installed package's `l2l.strategies` entry points."""
    (tmp_path / "l2l_sweep.py").write_text(STRATEGY)
    info = tmp_path / "l2l_sweep-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: l2l-sweep\nVersion: 0.1\n")
    entries = "sweep = l2l_sweep:Sweep\nbroken = l2l_sweep:not_a_controller\nrandom = l2l_sweep:Sweep\n"
    entries += "tuples = l2l_sweep:Tuples\nsilent = l2l_sweep:Silent\ncrashing = l2l_sweep:Crashing\n"
    (info / "entry_points.txt").write_text(f"[l2l.strategies]\n{entries}")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_controller_contract_says_what_the_search_would_say_of_a_broken_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A strategy returning tuples failed 21 contract tests with "'tuple' object has no attribute 'tokens'"."""
    from l2l.controllers import ControllerError, make_controller
    from l2l.testing.controllers import DECISIONS, ControllerContract, checked

    install_strategies(tmp_path, monkeypatch)
    contract = ControllerContract()
    for name, message in [
        ("tuples", "strategy Tuples: propose(1) returned 1 item(s) of tuple; expected a list of 1 Proposal"),
        ("silent", "strategy Silent: update returned NoneType, not UpdateStats"),
    ]:

        def make(seed: int, name: str = name) -> Any:
            return checked(make_controller(name, DECISIONS, seed))

        with pytest.raises(ControllerError, match=re.escape(message)):
            contract.test_proposals_are_well_formed(make, DECISIONS)


def test_a_strategy_plugin_is_used_by_name_and_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from l2l.controllers import ControllerError, default_batch, make_controller
    from l2l.runs.cli import app
    from l2l.runs.store import Store

    install_strategies(tmp_path, monkeypatch)
    assert default_batch("sweep") == 2 and default_batch("sweep+screen") == 4
    assert type(make_controller("random", [Decision.categorical("a", [1, 2])], 0)).__name__ == "RandomController"
    with pytest.raises(ControllerError, match="strategy plugin 'broken' made str, not a Controller"):
        make_controller("broken", [Decision.categorical("a", [1, 2])], 0)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    runner = CliRunner()
    for strategy in ("sweep", "sweep+reeval"):
        args = ["search", "--space", "toy", "--strategy", strategy, "-n", "6", "--executor", "local", "-q"]
        out = runner.invoke(app, [*args, "--storage", storage])
        assert out.exit_code == 0, out.output
    store = Store(storage)
    assert [r.strategy for r in store.list_runs()] == ["sweep+reeval", "sweep"]
    assert len(store.updates(1)) == 3  # its own batch of 2: three updates for six children
    unknown = runner.invoke(app, ["search", "--space", "toy", "--strategy", "nope", "--storage", storage])
    assert "known: reinforce, ppo, random, evolution, tpe, gp, qmc, broken, crashing, silent, sweep," in " ".join(
        unknown.output.split()
    )
    for strategy, message in [  # a plugin's mistake is named where it is made, in one line
        ("tuples", "strategy Tuples: propose(1) returned 1 item(s) of tuple; expected a list of 1 Proposal"),
        ("silent", "strategy Silent: update returned NoneType, not UpdateStats"),
        ("crashing", "strategy plugin 'crashing': update() raised KeyError: 'missing'"),
        ("crashing+screen", "strategy plugin 'crashing': update() raised KeyError: 'missing'"),
        # a wrapper passes the mistake on as the plugin's (+reeval failed on it with a TypeError)
        ("tuples+reeval", "strategy Tuples: propose(1) returned 1 item(s) of tuple; expected a list of 1 Proposal"),
    ]:
        args = ["search", "--space", "toy", "--strategy", strategy, "-n", "2", "--executor", "local", "-q"]
        out = runner.invoke(app, [*args, "--storage", storage], env={"COLUMNS": "300"})
        assert out.exit_code == 1 and f"error: {message}" in out.output, out.output
        kept = re.search(
            r"run (\d+) keeps what it recorded; once the cause is fixed, continue it with "
            r"`l2l search --resume (\d+) --storage ",
            out.output,
        )
        # a run that failed after children were trained says how to go on; one that failed before is gone
        assert (kept is not None and kept[1] == kept[2]) == (not strategy.startswith("tuples")), out.output


def test_the_space_contract_says_what_the_search_would_say_of_a_bad_result() -> None:
    class Floaty(Flaky):
        def evaluate(self, spec: Spec, ctx: Context) -> Result:
            return 0.5  # type: ignore[return-value]

    class Texty(Flaky):
        def evaluate(self, spec: Spec, ctx: Context) -> Result:
            return Result(reward=0.5, test={"run": "id-17"})  # type: ignore[dict-item]

    contract = SpaceContract()
    with pytest.raises(AssertionError, match="evaluate returned float, not a Result"):
        contract.test_evaluate_gives_a_finite_result(Floaty(), Expected())
    with pytest.raises(AssertionError, match=r"would record this child as failed: result does not fit the store: "):
        contract.test_evaluate_gives_a_finite_result(Texty(), Expected())


def test_a_plugins_describe_graph_or_decisions_that_misbehave_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.search_spaces import described

    class Mute(Flaky):
        def describe(self, spec: Spec) -> str:
            raise RuntimeError("describe blew up")

    class Counting(Flaky):
        def describe(self, spec: Spec) -> str:
            return 7  # type: ignore[return-value]

    spec = Flaky().decode((0,))
    assert described(Mute(), spec) == described(Counting(), spec) == "x=good"  # the spec's own form
    code = (
        "from l2l.search_spaces import Decision, Result, SearchSpace\n"
        "class Loose(SearchSpace):\n"
        "    name = 'loose'\n"
        "    def decisions(self): return [{'name': 'a', 'options': [1, 2]}]\n"
        "    def evaluate(self, spec, ctx): return Result(reward=1.0)\n"
        "class Forgot(Loose):\n"
        "    def decisions(self): [Decision.categorical('a', [1, 2])]\n"
        "class Tangled(SearchSpace):\n"
        "    name = 'tangled'\n"
        "    def decisions(self): return [Decision.categorical('a', [1, 2])]\n"
        "    def describe(self, spec): raise RuntimeError('describe blew up')\n"
        "    def graph(self, spec): return {'nodes': 'oops'}\n"
        "    def evaluate(self, spec, ctx): return Result(reward=1.0)\n"
    )
    (tmp_path / "odd.py").write_text(code)
    runner, storage = CliRunner(), ["--storage", f"sqlite:///{tmp_path / 'o.db'}"]
    loose = runner.invoke(app, ["spaces", "show", f"{tmp_path / 'odd.py'}:Loose"], env={"COLUMNS": "300"})
    assert loose.exit_code == 1 and "decisions() gave dict {'name': 'a'" in loose.output
    forgot = runner.invoke(app, ["spaces", "show", f"{tmp_path / 'odd.py'}:Forgot"], env={"COLUMNS": "300"})
    assert forgot.exit_code == 1 and "decisions() returned NoneType None; it must return a list of Decision" in (
        forgot.output
    )  # was: decisions() raised TypeError("'NoneType' object is not iterable"), l2l's own failure
    args = ["search", "--space", f"{tmp_path / 'odd.py'}:Tangled", "-n", "2", "--executor", "local", "-q"]
    assert runner.invoke(app, [*args, *storage]).exit_code == 0
    for command in (["runs", "top", "1"], ["runs", "best", "1"]):
        out = runner.invoke(app, [*command, *storage])
        assert out.exit_code == 0 and "a=" in out.output, out.output
    plotted = runner.invoke(app, ["plot", "arch", "1", "-o", str(tmp_path / "a.png"), *storage], env={"COLUMNS": "300"})
    assert plotted.exit_code == 1 and "error: space 'tangled': the space's graph() must give {'nodes'" in " ".join(
        plotted.output.split()
    ), plotted.output


def test_a_strategy_proposing_a_forbidden_combination_is_stopped_before_it_is_trained() -> None:
    """A plugin strategy that ignored the space's forbidden combinations had them trained and ranked best."""
    from l2l.controllers import ControllerError, make_controller
    from l2l.controllers.base import Proposal, checked_proposals
    from l2l.search_spaces.constraints import Constraints

    controller = make_controller("random", [Decision.categorical("a", [1, 2]), Decision.categorical("b", [1, 2])], 0)
    controller.constrain(Constraints([2, 2], clauses=[{0: 1, 1: 0}]))  # a=2 with b=1 is forbidden
    allowed = [Proposal((0, 0), 0.0, 0.0, 0), Proposal((1, 1), 0.0, 0.0, 0)]
    assert checked_proposals(controller, allowed, 2) == allowed
    with pytest.raises(ControllerError, match=r"strategy RandomController: proposed \[1, 0\], a combination the space"):
        checked_proposals(controller, [Proposal((1, 0), 0.0, 0.0, 0)], 1)
    # tokens the space cannot read: the strategy's mistake (it was "space 'mlp' expects 9 tokens, got 5")
    for tokens in [(0,), (0, 0, 1), (0, 2), (-1, 0)]:
        with pytest.raises(ControllerError, match=r"strategy RandomController: proposed .*; the space takes 2 tokens"):
            checked_proposals(controller, [Proposal(tokens, 0.0, 0.0, 0)], 1)
    # through a wrapper, the strategy that proposed it is named (it was "strategy ScreenedController")
    wrapped = make_controller("random+screen", controller.decisions, 0)
    wrapped.constrain(Constraints([2, 2], clauses=[{0: 1, 1: 0}]))
    with pytest.raises(ControllerError, match=r"strategy RandomController \(as random\+screen\): proposed \[1, 0\]"):
        checked_proposals(wrapped, [Proposal((1, 0), 0.0, 0.0, 0)], 1)


def test_a_strategy_whose_checkpoint_cannot_be_read_back_fails_at_its_first_checkpoint() -> None:
    """A plugin's state holding an object (or without its kind) was stored at every update and failed only at
    --resume, in a many-line torch message, with every checkpoint of the run unreadable."""
    from l2l.controllers import ControllerError, make_controller

    decisions = [Decision.categorical("a", [1, 2])]
    controller = make_controller("random", decisions, 0)
    plain = controller.lean_state_dict
    controller.lean_state_dict = lambda: {**plain(), "thing": Opaque()}  # type: ignore[method-assign]
    with pytest.raises(ControllerError) as caught:
        controller.checkpoint_bytes()
    said = str(caught.value)
    assert said.startswith("strategy RandomController: its checkpoint cannot be read back (cannot read random ")
    assert "Unsupported global: GLOBAL" in said and "Opaque" in said and "\n" not in said and "\x1b" not in said
    # wrapped: the wrapped strategy's kind is what its state_dict must give (it said 'random+screen')
    wrapped = make_controller("random+screen", decisions, 0)
    inner = wrapped.base  # type: ignore[attr-defined]
    plain_inner = inner.state_dict
    inner.state_dict = lambda: {**plain_inner(), "thing": Opaque()}
    with pytest.raises(ControllerError) as caught:
        wrapped.checkpoint_bytes()
    said = str(caught.value)
    assert said.startswith("strategy RandomController (as random+screen): its checkpoint cannot be read back")
    assert "'kind': 'random' holding" in said
    unnamed = make_controller("random", decisions, 0)
    unnamed.lean_state_dict = lambda: {k: v for k, v in plain().items() if k != "kind"}  # type: ignore[method-assign]
    with pytest.raises(ControllerError, match=r"checkpoint is of a None controller, not 'random'\); state_dict\(\)"):
        unnamed.checkpoint_bytes()
    good = make_controller("random", decisions, 0)
    assert good.checkpoint_bytes() == good.checkpoint_bytes()  # read back once, then written as before
    local = make_controller("random", decisions, 0)
    local.lean_state_dict = lambda: {**plain(), "f": lambda: 0}  # type: ignore[method-assign]
    with pytest.raises(ControllerError, match=r"strategy RandomController: its state_dict\(\) cannot be saved: "):
        local.checkpoint_bytes()


class Opaque:
    """An object in a strategy's state: pickled by reference, so torch.load(weights_only=True) refuses it."""


SELF_SEARCH = """
import os

from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Decision, Result, SearchSpace


class Tiny(SearchSpace):
    name = "tiny"

    def decisions(self):
        return [Decision.categorical("x", [1, 2, 3])]

    def evaluate(self, spec, ctx):
        return Result(reward=float(spec["x"]) / 3)


RUNS = os.environ["OWN_RUNS"]
config = SearchConfig(space=__file__ + ":Tiny", strategy="random", children=3, batch=1, executor="local")
run = Search.start(Store(RUNS), config).run()  # no `if __name__ == "__main__":` guard
print("searched", len(Store(RUNS).children(run, "done")))
"""


def test_a_script_that_searches_a_space_it_defines_runs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Naming its own file made the loader run the script again, which searched again, until Python's recursion
    limit ended it with a KeyError."""
    import subprocess
    import sys

    script = tmp_path / "own_space.py"
    script.write_text(SELF_SEARCH)
    monkeypatch.setenv("OWN_RUNS", f"sqlite:///{tmp_path / 'own.db'}")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.count("searched 3") == 1, done.stdout + done.stderr
    # imported under another name (as a Ray worker would), it loads itself again: named, not a recursion
    with pytest.raises(PluginError, match=r"the script runs a search when imported.*if __name__ == "):
        load_space(f"{script}:Tiny")


def test_two_threads_loading_one_file_space_at_once_both_get_it(tmp_path: Path) -> None:
    """The dashboard rebuilds spaces on worker threads: the second of two at once was told its file loads itself."""
    import threading

    (tmp_path / "slow_space.py").write_text(
        "import time\nfrom l2l.search_spaces import Decision, SearchSpace\ntime.sleep(0.3)\n\n"
        "class Slow(SearchSpace):\n    name = 'slow'\n\n    def decisions(self):\n"
        "        return [Decision.categorical('x', [1, 2])]\n\n    def evaluate(self, spec, ctx):\n"
        "        raise NotImplementedError\n"
    )
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(_try_load(f"{tmp_path}/slow_space.py:Slow"))) for _ in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["slow", "slow"], got


def _try_load(ref: str) -> object:
    try:
        return load_space(ref).name
    except PluginError as exc:
        return str(exc)


EDITABLE = """
from l2l.search_spaces import Decision, Result, SearchSpace

class Editable(SearchSpace):
    name = "editable"

    def decisions(self):
        return [Decision.categorical("a", OPTIONS), Decision.categorical("b", ["x", "y"])]

    def evaluate(self, spec, ctx):
        return Result(reward=spec["a"] / 10)
"""


def test_resuming_a_run_whose_plugin_changed_its_decisions_is_refused_naming_the_change(tmp_path: Path) -> None:
    """A plugin's options edited between a run's start and its resume: REINFORCE failed loading its controller
    (a size mismatch, as a traceback), evolution went on, reading the run's tokens as other architectures."""
    import subprocess
    import sys

    from l2l.runs.search import Search, SearchConfig
    from l2l.runs.store import Store

    file, url = tmp_path / "editable.py", f"sqlite:///{tmp_path / 'e.db'}"
    file.write_text("OPTIONS = [1, 2]\n" + EDITABLE)
    config = SearchConfig(space=f"{file}:Editable", strategy="evolution", children=4, batch=2, executor="local")
    store = Store(url)
    run = Search.start(store, config).run_id  # recorded; then the driver stops before any child
    store.set_run_status(run, "interrupted")
    file.write_text("OPTIONS = [1, 2, 3]\n" + EDITABLE)
    resume = [sys.executable, "-c", "from l2l.runs.cli import main; main()", "search", "--resume", str(run)]
    refused = subprocess.run([*resume, "--storage", url, "-q"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    expected = f"error: run {run}: the space '{file}:Editable' changed since the run started (decision 'a' had the "
    assert " ".join(refused.stderr.split()).startswith(expected + "options [1, 2], now [1, 2, 3]), so its recorded")
    assert store.get_run(run).status == "interrupted" and store.children(run) == []  # nothing taken over or run
    file.write_text("OPTIONS = [1, 2]\n" + EDITABLE)  # restored: it resumes
    done = subprocess.run([*resume, "--storage", url, "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and store.get_run(run).status == "done", done.stdout + done.stderr


def test_the_best_of_a_run_whose_plugin_is_gone_is_named_and_only_a_retraining_needs_it(tmp_path: Path) -> None:
    """A run of an uninstalled plugin (or of a file plugin written for the old `search_spaces` imports): `runs top`
    named its best, `runs best` refused ("cannot rebuild the space") though it only reads the store."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    file = tmp_path / "editable.py"
    file.write_text("OPTIONS = [1, 2]\n" + EDITABLE)
    runner, storage = CliRunner(), ["--storage", f"sqlite:///{tmp_path / 'g.db'}"]
    args = ["search", "--space", f"{file}:Editable", "-n", "4", "--executor", "local", "--strategy", "random", "-q"]
    assert runner.invoke(app, [*args, *storage]).exit_code == 0
    file.unlink()
    best = runner.invoke(app, ["runs", "best", "1", *storage], env={"COLUMNS": "300"})
    assert best.exit_code == 0 and "best of run 1:" in best.output and "a=2" in best.output, best.output
    again = runner.invoke(app, ["runs", "best", "1", "--retrain", *storage], env={"COLUMNS": "300"})
    assert again.exit_code == 1 and "cannot rebuild the space" in again.output


def test_strategies_list_shows_the_built_ins_and_each_plugin_loaded_or_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No command listed the strategies: a plugin's showed only in the error of a misspelt --strategy."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    install_strategies(tmp_path, monkeypatch)
    typo = tmp_path / "l2l_typo-0.1.dist-info"  # another package whose entry point names no object
    typo.mkdir()
    (typo / "METADATA").write_text("Metadata-Version: 2.1\nName: l2l-typo\nVersion: 0.1\n")
    (typo / "entry_points.txt").write_text("[l2l.strategies]\ntypo = l2l_sweep:Sweeep\n")
    out = CliRunner().invoke(app, ["strategies", "list"], env={"COLUMNS": "300"})
    assert out.exit_code == 0, out.output
    rows = {line.split("│")[1].strip(): line for line in out.output.splitlines() if line.startswith("│")}
    assert {"reinforce", "ppo", "random", "evolution", "tpe", "gp", "qmc", "sweep", "typo"} <= set(rows)
    assert "built in" in rows["reinforce"] and "plugin (l2l.strategies)" in rows["sweep"] and "│ 2 " in rows["sweep"]
    assert "cannot load" in rows["typo"] and "Sweeep" in rows["typo"]
    assert "│ Random sampling, two at a time. " in rows["sweep"]  # its docstring's first line (it said nothing)
    assert "default: reinforce+screen" in out.output
    # the package also registers `random`, a built-in's name: the built-in runs, and the list says why
    assert (
        "note: the plugin strategy random = l2l_sweep:Sweep (l2l.strategies) is not used: a built-in strategy has "
        "its name; rename its entry point"
    ) in out.output


def test_plot_pareto_uses_the_costs_a_space_declares_without_flops(tmp_path: Path) -> None:
    """A space declaring cost_metrics = ("trees",) was told its children report no 'flops'."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    (tmp_path / "forest.py").write_text(
        "from l2l.search_spaces import Decision, Result, SearchSpace\n"
        "class Forest(SearchSpace):\n"
        "    name = 'forest'\n"
        "    cost_metrics = ('trees',)\n"
        "    def decisions(self): return [Decision.categorical('trees', [10, 20, 40])]\n"
        "    def evaluate(self, spec, ctx):\n"
        "        return Result(reward=spec['trees'] / 40, val_acc=spec['trees'] / 40, cost={'trees': spec['trees']})\n"
    )
    runner, storage = CliRunner(), ["--storage", f"sqlite:///{tmp_path / 'f.db'}"]
    args = ["search", "--space", f"{tmp_path / 'forest.py'}:Forest", "-n", "3", "--executor", "local", "-q"]
    assert runner.invoke(app, [*args, *storage]).exit_code == 0
    out = runner.invoke(app, ["plot", "pareto", "1", "-o", str(tmp_path / "p.png"), *storage], env={"COLUMNS": "300"})
    assert out.exit_code == 0 and (tmp_path / "p.png").exists(), out.output
