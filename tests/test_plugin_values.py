"""What a plugin author writes against: typed options, `Spec` as a mapping, results checked at the store's
boundary, one-line constructor errors and per-strategy default batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from l2l.runs.cli import app
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Context, Decision, PluginError, Result, SearchSpace, SpaceError, Spec, load_space
from l2l.search_spaces.results import checked_result


class Typed(SearchSpace):
    """A space whose options are ints, floats and bools, used as numbers by `evaluate`."""

    name = "typed"

    def decisions(self) -> Sequence[Decision]:
        return [
            Decision.categorical("filters", [16, 32]),
            Decision.categorical("dropout", [0.0, 0.5]),
            Decision.categorical("bias", [True, False]),
            Decision.categorical("act", ["relu", "tanh"]),
        ]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        score = spec["filters"] / 32 - spec["dropout"] / 10 + (0.01 if spec["bias"] else 0.0)  # type: ignore[operator]
        return Result(reward=score, val_acc=score)


def test_options_come_back_with_the_type_they_were_declared_with() -> None:
    space = Typed()
    spec = space.decode((1, 1, 0, 1))
    assert spec["filters"] == 32 and type(spec["filters"]) is int
    assert spec["dropout"] == 0.5 and type(spec["dropout"]) is float
    assert spec["bias"] is True and spec["act"] == "tanh"
    assert space.encode(spec) == (1, 1, 0, 1)
    again = Spec.from_json(spec.to_json())
    assert again == spec and type(again["filters"]) is int
    assert space.evaluate(spec, Context()).reward == pytest.approx(1 - 0.05 + 0.01)
    assert Decision.categorical("n", np.arange(3)).options == (0, 1, 2)  # numpy ints become ints


def test_an_option_json_cannot_hold_is_refused_naming_the_decision() -> None:
    with pytest.raises(SpaceError, match=r"decision 'shape': option \(3, 3\) is a tuple"):
        Decision.categorical("shape", [(3, 3), (5, 5)])
    with pytest.raises(SpaceError, match="decision 'lr': option nan is not a finite number"):
        Decision.categorical("lr", [0.1, float("nan")])
    with pytest.raises(SpaceError, match="decision 'act': options must be a list of values, got 'relu'"):
        Decision.categorical("act", "relu")  # not four options 'r', 'e', 'l', 'u'
    with pytest.raises(SpaceError, match="a decision's name must be text, got 5"):
        Decision.categorical(5, [1, 2]).check()  # type: ignore[arg-type]
    with pytest.raises(SpaceError, match=r"duplicate options \[1, True\] \(equal as values"):
        Decision.categorical("flag", [1, "1", True]).check()


def test_spec_is_a_read_only_mapping_in_decision_order() -> None:
    spec = Typed().decode((0, 1, 1, 0))
    assert isinstance(spec, Mapping)
    assert "filters" in spec and "layer_0" not in spec and 0 not in spec and [] not in spec
    assert list(spec) == ["filters", "dropout", "bias", "act"] and len(spec) == 4
    assert dict(spec) == {"filters": 16, "dropout": 0.5, "bias": False, "act": "relu"}
    assert list(spec.values()) == [16, 0.5, False, "relu"]
    assert spec.get("missing", 7) == 7 and {**spec}["act"] == "relu"
    with pytest.raises(KeyError, match="spec of space 'typed' has no decision 'layer_0'"):
        spec["layer_0"]
    with pytest.raises(TypeError):
        spec["filters"] = 32  # type: ignore[index]
    assert hash(spec) == hash(Typed().decode((0, 1, 1, 0)))


def unchecked(**fields: Any) -> Result:
    """A result built as a plugin might, whatever types its fields hold."""
    return Result(**fields)


@pytest.mark.parametrize(
    ("result", "field"),
    [
        (unchecked(reward=1.0, test={"id": "abc"}), "Result.test['id'] is 'abc' (str), not a number"),
        (unchecked(reward=1.0, test={"acc": "0.5"}), "Result.test['acc'] is '0.5' (str), not a number"),
        (unchecked(reward=1.0, cost={"params": None, "flops": [1, 2]}), "Result.cost['flops'] is [1, 2] (list)"),
        (unchecked(reward="0.9"), "Result.reward is '0.9' (str), not a number"),
        (unchecked(reward=1.0, val_acc="high"), "Result.val_acc is 'high' (str)"),
        (unchecked(reward=1.0, curves={"val_acc": [0.1, "x"]}), "Result.curves['val_acc'][1] is 'x' (str)"),
        (unchecked(reward=1.0, info={"model": object()}), "Result.info['model'] is <object object"),
        (unchecked(reward=1.0, info={1: "a"}), "Result.info has key 1 (int); keys are strings"),
    ],
)
def test_a_field_that_does_not_fit_fails_the_child_naming_the_field(result: Result, field: str) -> None:
    checked = checked_result(result)
    assert checked.status == "failed" and not checked.ok
    assert checked.error is not None and checked.error.startswith("result does not fit the store: ")
    assert field in checked.error


def test_numpy_scalars_are_numbers_and_info_becomes_plain_json() -> None:
    result = Result(
        reward=np.float32(0.5),  # type: ignore[arg-type]
        val_acc=np.float64(0.25),  # type: ignore[arg-type]
        test={"test_acc": np.float16(0.5)},  # type: ignore[dict-item]
        cost={"params": np.int64(1234)},  # type: ignore[dict-item]
        curves={"val_acc": np.array([0.1, 0.2])},  # type: ignore[dict-item]
        info={"steps": np.int64(7), "hist": np.array([1, 2]), "nested": {"t": (1, np.bool_(True))}, "w": "mine"},
    )
    checked = checked_result(result)
    assert checked.ok and checked.reward == 0.5 and checked.cost == {"params": 1234.0}
    assert checked.info == {"steps": 7, "hist": [1, 2], "nested": {"t": [1, True]}, "w": "mine"}
    assert type(checked.info["steps"]) is int and checked.curves == {"val_acc": [0.1, 0.2]}
    assert checked_result("done").error == "evaluate returned str, not a Result"


class Picky(SearchSpace):
    """Child 1 reports a string test id, child 2 a numpy int in info and keys the executor also writes."""

    name = "picky"
    failure_reward: ClassVar[float] = 0.0

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", [0, 1, 2, 3])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        if ctx.child == 1:
            return unchecked(reward=0.5, test={"run": "id-17"})
        info: dict[str, Any] = {"steps": np.int64(ctx.child), "worker": "my-own", "wall_time": "plugin's"}
        return Result(reward=0.1 * (1 + ctx.child), val_acc=0.5, info=info)


def test_a_result_that_does_not_fit_fails_its_child_and_the_search_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    search = Search.start(store, SearchConfig(space=str(Path(__file__).resolve()) + ":Picky", children=6, batch=2))
    search.run()
    children = store.children(search.run_id)
    assert [c.status for c in children].count("done") == 5
    bad = children[1]
    assert bad.status == "failed" and bad.error is not None
    assert "Result.test['run'] is 'id-17' (str), not a number" in bad.error
    good = children[2]
    assert good.metrics["info"] == {"steps": 2, "worker": "my-own", "wall_time": "plugin's"}  # the plugin's own
    assert good.metrics["runtime"]["wall_time"] >= 0 and good.worker is not None and good.worker != "my-own"
    assert good.wall_time is not None and good.wall_time >= 0


class NeedsData(SearchSpace):
    """Reads a data file at construction."""

    name = "needs-data"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        Path("/nonexistent/l2l/data.csv").read_text()

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", [0, 1])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=0.0)


def test_a_constructor_that_raises_anything_is_one_line() -> None:
    ref = str(Path(__file__).resolve()) + ":NeedsData"
    with pytest.raises(
        PluginError, match=r"search space 'needs-data': building it with options \{\} failed: FileNotFound"
    ):
        load_space(ref)
    out = CliRunner().invoke(app, ["spaces", "show", ref])
    assert out.exit_code == 1 and "Traceback" not in out.output
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: search space 'needs-data'") and "FileNotFoundError" in out.output


def test_spaces_show_prints_the_docstring_without_its_source_indentation() -> None:
    out = CliRunner().invoke(app, ["spaces", "show", str(Path(__file__).resolve()) + ":Picky"])
    assert out.exit_code == 0, out.output
    assert "\nChild 1 reports a string test id, child 2 a numpy int" in out.output
    assert "16, 32" not in out.output and "0, 1, 2, 3" in out.output


@pytest.mark.parametrize(
    ("strategy", "batch"),
    [("evolution", 1), ("tpe", 1), ("random", 1), ("reinforce", 4), ("ppo", 10), ("reinforce+screen", 4)],
)
def test_each_strategy_has_its_own_default_batch(strategy: str, batch: int) -> None:
    config = SearchConfig(strategy=strategy)
    assert config.batch == batch and config.to_json()["batch"] == batch
    assert SearchConfig(strategy=strategy, batch=3).batch == 3


class Regression(SearchSpace):
    """Declares its metrics: an r2 validation figure, two test metrics and a cost."""

    name = "regression"
    validation_metric = "r2"
    test_metrics = ("test_r2", "test_mse")
    cost_metrics = ("params",)

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("width", [4, 8, 16])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        r2 = spec["width"] / 20  # type: ignore[operator]
        return Result(
            reward=r2,
            val_acc=r2,
            test={"test_mse": 1 - r2, "test_r2": r2 - 0.01},
            cost={"params": 100.0 * spec["width"]},  # type: ignore[operator]
        )


def searched(tmp_path: Path, space: str, children: int, *options: str) -> tuple[CliRunner, str]:
    """A search of this file's ``space`` class on the local executor; the runner and the store's URL."""
    storage = f"sqlite:///{tmp_path / 's.db'}"
    ref = f"{Path(__file__).resolve()}:{space}"
    runner = CliRunner()
    args = ["search", "--space", ref, *options, "--executor", "local", "-n", str(children), "--storage", storage]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return runner, storage


def test_tables_and_exports_follow_the_metrics_a_space_declares(tmp_path: Path) -> None:
    runner, storage = searched(tmp_path, "Regression", 3)
    top = runner.invoke(app, ["runs", "top", "1", "--storage", storage], terminal_width=200).output
    header = next(line for line in top.splitlines() if "rank" in line)
    assert header.index("val r2") < header.index("test_r2") < header.index("test_mse") < header.index("params")
    assert "test_acc" not in top and "1,600" in top and "0.7900" in top  # width 16: test_r2 0.79, 1,600 params
    best = runner.invoke(app, ["runs", "best", "1", "--storage", storage]).output
    assert "test_r2 0.7900, test_mse 0.2000" in best
    rows = runner.invoke(app, ["runs", "export", "1", "--format", "csv", "--storage", storage]).output.splitlines()
    columns = rows[0].split(",")
    assert (
        columns[-6:] == ["test_r2", "test_mse", "cost_params", "info", "tokens", "spec"] and "test_acc" not in columns
    )


class LossOnly(SearchSpace):
    """A space that measures a validation loss and no accuracy, keeping the default `validation_metric`."""

    name = "loss_only"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("width", [4, 8, 16])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        loss = 1 / spec["width"]  # type: ignore[operator]
        return Result(reward=-loss, val_loss=loss)


def test_a_space_that_measures_only_a_loss_shows_its_loss(tmp_path: Path) -> None:
    runner, storage = searched(tmp_path, "LossOnly", 6)
    for by in ("mean", "single"):
        top = runner.invoke(app, ["runs", "top", "1", "--by", by, "--storage", storage], terminal_width=200).output
        header = next(line for line in top.splitlines() if "rank" in line)
        assert "val loss" in header and "val acc" not in header, top
        assert "0.0625" in top, top  # width 16: loss 1/16, shown (the column was empty)
    best = runner.invoke(app, ["runs", "best", "1", "--retrain", "--storage", storage]).output
    assert "validation loss 0.0625" in best, best


class ByNumber(SearchSpace):
    """A space whose network depends on the child's number (as `macro` grows deeper with it)."""

    name = "by_number"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("width", [4, 8])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=float(ctx.child), info={"built_for_child": ctx.child})


def test_a_retrained_child_is_built_as_its_own_number_built_it(tmp_path: Path) -> None:
    """`runs best --retrain` built every child as child 0: a growing `macro` run's best, 3 layers deep, was
    retrained at depth 1."""
    runner, storage = searched(tmp_path, "ByNumber", 4)
    best = runner.invoke(app, ["runs", "best", "1", "--by", "single", "--retrain", "--storage", storage]).output
    assert "best of run 1: child 3" in best and "evaluated again" not in best, best
    assert "reward 3.0000" in best.split("retrained", 1)[1], best


class OwnEpochs(SearchSpace):
    """README's `TinyMLP` in small: it trains for its own ``epochs`` option and declares no ``budget_keys``."""

    name = "own_epochs"

    def __init__(self, epochs: int = 30) -> None:
        super().__init__(epochs=epochs)
        self.epochs = int(epochs)

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("width", [4, 8])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=float(self.epochs), info={"budget": dict(ctx.budget)})


def test_retraining_a_space_that_reads_its_own_epochs_sets_them(tmp_path: Path) -> None:
    """`--retrain --epochs 500` on such a space said "retrained for 500 epochs" and trained the run's 20."""
    runner, storage = searched(tmp_path, "OwnEpochs", 2, "-S", "epochs=3")
    best = runner.invoke(app, ["runs", "best", "1", "--retrain", "--epochs", "7", "--storage", storage]).output
    assert "retrained for 7 epochs: reward 7.0000" in best, best
    again = runner.invoke(app, ["runs", "best", "1", "--retrain", "--storage", storage]).output
    assert "retrained: reward 3.0000" in again, again  # without the flag: the run's own setting
    steps = runner.invoke(app, ["runs", "best", "1", "--retrain", "--steps", "5", "--storage", storage])
    assert steps.exit_code == 1 and "--steps does not apply" in steps.output, steps.output


class LooseEpochs(OwnEpochs):
    """Takes its options through ``**options`` and keeps none of them: --epochs cannot be said to apply."""

    def __init__(self, **options: Any) -> None:
        SearchSpace.__init__(self, **options)
        self.epochs = 30


def test_a_space_that_takes_options_loosely_and_drops_epochs_is_not_said_retrained_for_them(tmp_path: Path) -> None:
    runner, storage = searched(tmp_path, "LooseEpochs", 2)
    best = runner.invoke(app, ["runs", "best", "1", "--retrain", "--epochs", "7", "--storage", storage])
    assert best.exit_code == 1 and "was rebuilt with epochs=7 and did not keep it (its epochs is 30)" in " ".join(
        best.output.split()
    ), best.output


class Seeded(SearchSpace):
    """A child's reward is the seed it trained with."""

    name = "seeded"

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("width", [4, 8])]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        return Result(reward=float(ctx.seed))


def test_a_retraining_uses_the_childs_own_seed_unless_given_one(tmp_path: Path) -> None:
    """It used seed 0: `--retrain` could not give a child's figures again, and nothing said which seed it took."""
    from l2l.runs.search import child_seed
    from l2l.runs.store import Store

    runner, storage = searched(tmp_path, "Seeded", 3, "--seed", "5")
    best = max(Store(storage).children(1), key=lambda c: c.reward or 0.0)
    own = runner.invoke(app, ["runs", "best", "1", "--by", "single", "--retrain", "--storage", storage]).output
    seed = child_seed(5, best.number)
    assert f"retrained: reward {seed:.4f}; seed {seed} (child {best.number}'s own)" in " ".join(own.split()), own
    given = runner.invoke(app, ["runs", "best", "1", "--retrain", "--seed", "3", "--storage", storage]).output
    assert "retrained: reward 3.0000; seed 3" in given and "own" not in given, given


def test_a_figure_that_is_not_finite_is_stored_as_missing_and_said() -> None:
    """A NaN validation accuracy or an infinite loss became NULL in the store without a word."""
    from l2l.search_spaces.results import checked_result

    said = checked_result(Result(reward=0.24, val_acc=float("nan"), val_loss=float("inf"), test={"test_acc": 0.2}))
    assert said.status == "done" and said.to_json()["val_acc"] is None and said.to_json()["val_loss"] is None
    assert said.runtime["notice"] == (
        "a child reported val_acc nan, val_loss inf: the store keeps a figure that is not finite as missing (null)"
    )
    assert "notice" not in checked_result(Result(reward=0.24, val_acc=0.2, val_loss=1.5)).runtime
