"""The optimizer task suite: tasks as data, fixed splits, seeded runs, divergence, suites and task plugins."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from l2l.optsearch.suite import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    SUITES,
    TaskError,
    all_tasks,
    plugin_problems,
    resolve_suite,
)
from l2l.optsearch.trainer import Diverged, SuiteTask, train_run
from l2l.search_spaces import PluginError, load_space


def _adam(params, lr):  # type: ignore[no-untyped-def]
    return torch.optim.Adam(params, lr=lr)


def _short(task: SuiteTask, steps: int = 6) -> SuiteTask:
    return dataclasses.replace(task, steps=steps, evals=min(2, steps))


def test_suites_are_disjoint_and_cover_the_kinds_asked_for() -> None:
    assert len(SUITES["search"]) >= 6 and len(SUITES["heldout"]) >= 6
    assert not set(SUITES["search"]) & set(SUITES["heldout"])
    assert len(BUILTIN) >= 12
    kinds = " | ".join(t.kind for t in BUILTIN.values())
    for kind in ("convex", "deep plain MLP", "autoencoder", "regression", "LSTM language model", "transformer",
                 "recurrent sequence classifier", "batch norm", "dropout"):  # fmt: skip
        assert kind in kinds, kind
    problems = {t.problem for t in BUILTIN.values()}
    assert {"digits", "mnist1d", "shakespeare"} <= problems
    # each suite mixes metrics that go up and metrics that go down
    for suite in ("search", "heldout"):
        assert {BUILTIN[n].higher_is_better for n in SUITES[suite]} == {True, False}


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_task_trains_and_reports_validation_and_test(name: str) -> None:
    task = _short(BUILTIN[name])
    a = train_run(task, _adam, 1e-3, seed=0)
    b = train_run(task, _adam, 1e-3, seed=0)
    assert a.val_metric == b.val_metric and a.test_metric == b.test_metric  # the seed fixes everything
    assert len(a.curves["val_loss"]) == 2 and a.curves["step"] == [3.0, 6.0]
    for v in (a.val_loss, a.val_metric, a.test_loss, a.test_metric):
        assert v == v and abs(v) < 1e6
    desc = task.describe()
    assert min(desc["splits"].values()) >= 200 and desc["params"] > 0


def test_seeds_change_weights_and_order_but_not_the_splits() -> None:
    task = _short(BUILTIN["digits-mlp"], steps=20)
    a, b = train_run(task, _adam, 1e-2, seed=0), train_run(task, _adam, 1e-2, seed=1)
    assert a.val_loss != b.val_loss
    assert torch.equal(task.data().test.x, task.data().test.x)
    first = next(iter(task.build(0).parameters()))
    assert not torch.equal(first, next(iter(task.build(1).parameters())))


def test_training_improves_the_metric_in_the_right_direction() -> None:
    for name in ("digits-logreg", "friedman-mlp"):
        task = BUILTIN[name]
        start = train_run(_short(task, 1), _adam, 1e-2, seed=0).val_metric
        end = train_run(task, _adam, 1e-2, seed=0).val_metric
        assert (end > start) if task.higher_is_better else (end < start), name


def test_a_diverging_run_raises_with_the_step() -> None:
    task = _short(BUILTIN["friedman-mlp"], 30)
    with pytest.raises(Diverged, match=r"(loss became (nan|inf)|blew up).* at step \d+"):
        train_run(task, lambda p, lr: torch.optim.SGD(p, lr=lr), 1e3, seed=0)


def test_bad_declarations_and_names_fail_with_what_is_known() -> None:
    with pytest.raises(ValueError, match="unknown metric 'acc'; known: accuracy, mse, bpc"):
        SuiteTask("x", "digits", "linear", "cross_entropy", "acc", steps=10, batch_size=8)
    with pytest.raises(TaskError, match=r"unknown task or suite 'nope'; suites: search, heldout, user, all"):
        resolve_suite("digits-mlp,nope")
    assert [t.name for t in resolve_suite("digits-mlp, mnist1d-gru")] == ["digits-mlp", "mnist1d-gru"]
    assert [t.name for t in resolve_suite("heldout")] == list(SUITES["heldout"])
    # suites among the names (was "unknown task or suite 'heldout, search'"), each task once
    both = [t.name for t in resolve_suite("heldout,digits-mlp,search")]
    assert both == list(dict.fromkeys([*SUITES["heldout"], "digits-mlp", *SUITES["search"]]))
    # a metric reported from another loss was shown as "mse 2.21", the cross-entropy
    with pytest.raises(ValueError, match="metric 'mse' is measured with loss 'mse', not 'cross_entropy'"):
        SuiteTask("x", "digits", "linear", "cross_entropy", "mse", steps=10, batch_size=8)


PLUGIN = """
from l2l.optsearch.trainer import SuiteTask

def tiny_net(n_in, n_out, width=4):
    import torch
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, width), nn.ReLU(), nn.Linear(width, n_out))

def tasks():
    return [SuiteTask("tiny-digits", "digits", "l2l_tiny_tasks:tiny_net", "cross_entropy", "accuracy",
                      steps=8, batch_size=32, evals=2, kind="user plugin")]
"""


def install_task_plugin(
    root: Path, monkeypatch: pytest.MonkeyPatch, code: str = PLUGIN, module: str = "l2l_tiny_tasks"
) -> None:
    """A distribution on sys.path that registers the tasks of ``code``'s ``tasks`` under ``l2l.optimizer_tasks``."""
    (root / f"{module}.py").write_text(code)
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{module} = {module}:tasks\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, module, raising=False)


BROKEN = {  # a plugin's mistake, and the one line it gives
    "model_option": ('[SuiteTask("odd", "digits", "mlp", "cross_entropy", "accuracy", 8, 8, (("nosuch", 3),))]',
                     "task 'odd' cannot run: TypeError: "),
    "problem": ('[SuiteTask("odd", "nosuchproblem", "mlp", "cross_entropy", "accuracy", 8, 8)]',
                "failed to load: ValueError: task 'odd': unknown problem 'nosuchproblem'; known: digits"),
    # it loaded, and failed only when a suite with it ran: a search on built-in tasks said nothing of it
    "model": ('[SuiteTask("odd", "digits", "mlpp", "cross_entropy", "accuracy", 8, 8)]',
              "failed to load: ValueError: task 'odd': unknown model 'mlpp'; known: "),
    "loss_for_the_targets": ('[SuiteTask("odd", "friedman", "mlp", "cross_entropy", "accuracy", 8, 8)]',
                             "task 'odd': problem 'friedman' has real-valued targets; its loss is mse"),
    "raises_when_called": ("(_ for _ in ()).throw(RuntimeError('boom in call'))",
                           "failed to load: RuntimeError: boom in call"),
    "names_not_tasks": ('["digits-mlp"]', "gave a list holding str; expected a SuiteTask, a sequence of them"),
    # steps=30.5 failed in every run as "TypeError: 'float' object cannot be interpreted as an integer"
    "steps_not_whole": ('[SuiteTask("odd", "digits", "mlp", "cross_entropy", "accuracy", 30.5, 8)]',
                        "task 'odd': steps must be a whole number, got 30.5"),
    "batch_as_text": ('[SuiteTask("odd", "digits", "mlp", "cross_entropy", "accuracy", 8, "8")]',
                      "task 'odd': batch_size must be a whole number, got '8'"),
    # the second replaced the first with no word
    "one_name_twice": ('[SuiteTask("odd", "digits", "mlp", "cross_entropy", "accuracy", 8, 8)] * 2',
                       "defines the task 'odd' more than once; give each task its own name"),
    # accepted, and never selectable: `--suite search` is the built-in suite, `--suite a,b` two names
    "named_as_a_suite": ('[SuiteTask("search", "digits", "mlp", "cross_entropy", "accuracy", 8, 8)]',
                         "names a task 'search', a suite's name: it could never be asked for; rename it"),
    # "IndexError: Target 6 is out of bounds."
    "output_width": ('[SuiteTask("odd", "digits", "l2l_tiny_tasks:three_net", "cross_entropy", "accuracy", 8, 8)]',
                     "model 'l2l_tiny_tasks:three_net' gives 3 outputs per example; problem 'digits' has 10 classes"),
    # mse broadcast (2, 3) against (2, 1) with only a warning
    "regression_width": ('[SuiteTask("odd", "friedman", "l2l_tiny_tasks:three_net", "mse", "mse", 8, 8)]',
                         "outputs of shape (2, 3) for two examples; problem 'friedman' has targets of shape (2, 1)"),
    # passed the check; `evaluate` then said the optimizer diverged at every learning rate
    "nan_model": ('[SuiteTask("odd", "digits", "l2l_tiny_tasks:nan_net", "cross_entropy", "accuracy", 8, 8)]',
                  "task 'odd': model 'l2l_tiny_tasks:nan_net' gives a nan loss on two training examples before any"),
    # listed with a traceback (ValueError: too many values to unpack) by `l2l optimizers tasks`
    "options_not_pairs": ('[SuiteTask("odd", "digits", "mlp", "cross_entropy", "accuracy", 8, 8, ("width", 8))]',
                          "task 'odd': options must be (name, value) pairs or a dict of them, got ('width', 8)"),
    "name_with_a_comma": ('[SuiteTask("a,b", "digits", "mlp", "cross_entropy", "accuracy", 8, 8)]',
                          "names a task 'a,b', not a name a --suite can list"),
}  # fmt: skip

BROKEN_MODELS = """from torch import nn

from l2l.optsearch.trainer import SuiteTask

def three_net(n_in, n_out):  # three outputs, whatever the classes
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 3))

def nan_net(n_in, n_out):  # every output nan
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out), nn.Threshold(float("inf"), float("nan")))
"""


@pytest.mark.parametrize("mistake", list(BROKEN))
def test_a_broken_task_plugin_is_one_error_before_any_training_and_spares_the_builtins(
    mistake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value, message = BROKEN[mistake]
    install_task_plugin(tmp_path, monkeypatch, f"{BROKEN_MODELS}\ndef tasks():\n    return {value}\n")
    with pytest.raises(TaskError) as error:
        resolve_suite("user")
    assert message in str(error.value)
    assert str(error.value).startswith("optimizer task plugin 'l2l_tiny_tasks' (l2l_tiny_tasks:tasks)")  # named
    warnings: list[str] = []
    never_loads = (
        "raises_when_called",
        "steps_not_whole",
        "model",
        "named_as_a_suite",
        "name_with_a_comma",
        "options_not_pairs",
    )
    if mistake in never_loads:  # built-in suites go on without it
        assert [t.name for t in resolve_suite("heldout", warnings.append)] == list(SUITES["heldout"])
        assert len(warnings) == 1 and message in warnings[0] and warnings[0].endswith("its tasks are left out")
        # the optimizer space on a built-in suite too (it refused to load, naming the plugin)
        assert load_space("optimizer", {"suite": "digits-logreg"}).suite_tasks()[0].name == "digits-logreg"  # type: ignore[attr-defined]
    if mistake in (
        "model_option",
        "loss_for_the_targets",
        "nan_model",
        "regression_width",
    ):  # it loads: listed, and why it cannot run said
        from typer.testing import CliRunner

        from l2l.runs.cli import app

        listed = CliRunner().invoke(app, ["optimizers", "tasks"])  # it exited 0, saying nothing
        text = " ".join(listed.output.split())
        assert listed.exit_code == 1 and "odd (user): " in text and message in text, listed.output
    # asked for, it is the plugin's mistake, not bad options of the space (which it was called)
    with pytest.raises(PluginError) as refused:
        load_space("optimizer", {"suite": "user"})
    assert str(refused.value).startswith("an l2l.optimizer_tasks plugin is broken: ") and message in str(refused.value)
    assert "bad options" not in str(refused.value)


def test_a_broken_task_plugin_leaves_another_packages_tasks_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One package's typo in its entry point stopped every plugin task, even one named directly."""
    install_task_plugin(tmp_path, monkeypatch)  # healthy: tiny-digits
    broken = "def tasks():\n    raise RuntimeError('boom in call')\n"
    install_task_plugin(tmp_path, monkeypatch, broken, module="l2l_broken_tasks")
    install_task_plugin(tmp_path, monkeypatch, broken, module="l2l_broken_too")
    warnings: list[str] = []
    assert [t.name for t in resolve_suite("tiny-digits", warnings.append)] == ["tiny-digits"]
    assert len(warnings) == 2 and "plugin 'l2l_broken_t" in warnings[0] and "boom in call" in warnings[0]
    assert len(plugin_problems()) == 2  # each one said, as `l2l search` says them
    with pytest.raises(TaskError, match="plugin 'l2l_broken_t"):  # without a place to warn: refused
        resolve_suite("tiny-digits")
    with pytest.raises(TaskError, match="plugin 'l2l_broken_t"):  # the user suite would be missing its tasks
        resolve_suite("user", warnings.append)


def test_two_plugins_defining_one_task_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_task_plugin(tmp_path, monkeypatch)
    install_task_plugin(tmp_path, monkeypatch, PLUGIN, module="l2l_tiny_again")
    with pytest.raises(TaskError, match="task 'tiny-digits' is defined by two plugins: l2l_tiny_"):
        all_tasks()
    with pytest.raises(TaskError, match="task 'tiny-digits' is defined by two plugins"):  # neither one is used
        resolve_suite("tiny-digits", lambda _: None)


def test_a_task_registered_by_entry_point_joins_the_user_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_task_plugin(tmp_path, monkeypatch)
    assert "tiny-digits" in all_tasks()
    (task,) = resolve_suite("user")
    assert task.name == "tiny-digits"
    run = train_run(task, _adam, 1e-2, seed=0)
    assert 0.0 <= run.test_metric <= 1.0


BOOM = """
from l2l.optsearch.trainer import SuiteTask

class Boom:
    calls = 0

def boom_net(n_in, n_out):
    import torch

    class Net(torch.nn.Linear):
        def forward(self, x):
            Boom.calls += 1
            if Boom.calls > 3:  # past the one loss the load-time check computes
                raise RuntimeError(f"boom in forward at call {Boom.calls}")
            return super().forward(x.flatten(1))

    return Net(n_in, n_out)

def tasks():
    return [SuiteTask("boom", "digits", "l2l_tiny_tasks:boom_net", "cross_entropy", "accuracy", 8, 8, evals=2)]
"""


def test_a_task_no_optimizer_can_train_stops_the_search_before_any_rule_is_blamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every child failed, each blaming its rule: "rule '...' the reference adam diverged ..." (or the task's own
    RuntimeError), though the task was broken for any optimizer."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.runs.store import Store

    monkeypatch.setenv("L2L_OPTSEARCH_CACHE", str(tmp_path / "cache"))
    install_task_plugin(tmp_path, monkeypatch, BOOM)
    storage = f"sqlite:///{tmp_path}/o.db"
    args = ["search", "--space", "optimizer", "-S", "suite=boom", "-n", "2", "--executor", "local", "-q"]
    out = CliRunner().invoke(app, [*args, "--storage", storage])
    assert out.exit_code == 1, out.output
    assert "tuning the reference adam on the suite failed: RuntimeError: boom in forward at call" in out.output
    assert "Traceback" not in out.output and Store(storage).list_runs() == []  # no run of failed children


def test_a_broken_task_plugin_leaves_a_search_on_built_in_tasks_warned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    monkeypatch.setenv("L2L_OPTSEARCH_CACHE", str(tmp_path / "cache"))
    install_task_plugin(tmp_path, monkeypatch, "def tasks():\n    raise RuntimeError('half-written plugin')\n")
    args = ["search", "--space", "optimizer", "-S", "suite=digits-logreg", "-S", "scale=0.05", "-n", "1"]
    out = CliRunner().invoke(app, [*args, "--executor", "local", "-q", "--storage", f"sqlite:///{tmp_path}/o.db"])
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())
    assert "warning: optimizer task plugin 'l2l_tiny_tasks'" in said and "its tasks are left out" in said


def test_the_rules_of_a_run_whose_plugin_task_is_gone_can_still_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`optimizers top` and `export` rebuilt the space with the run's suite, and refused once a task was gone."""
    import shutil

    from typer.testing import CliRunner

    from l2l.runs.cli import app

    monkeypatch.setenv("L2L_OPTSEARCH_CACHE", str(tmp_path / "cache"))
    install_task_plugin(tmp_path, monkeypatch)
    storage = ["--storage", f"sqlite:///{tmp_path}/o.db"]
    args = ["search", "--space", "optimizer", "-S", "suite=tiny-digits", "-S", "lrs='0.01,0.1'", "-n", "2"]
    out = CliRunner().invoke(app, [*args, "--executor", "local", "-q", *storage])
    assert out.exit_code == 0, out.output
    shutil.rmtree(tmp_path / "l2l_tiny_tasks-0.1.dist-info")  # uninstalled
    top = CliRunner().invoke(app, ["optimizers", "top", "1", *storage], env={"COLUMNS": "300"})
    assert top.exit_code == 0, top.output
    said = " ".join(top.output.split())
    assert "run 1's suite cannot be loaded now" in said and "unknown task or suite 'tiny-digits'" in said
    assert "lr *" in top.output
    exported = CliRunner().invoke(app, ["optimizers", "export", "1", "-o", str(tmp_path / "found.py"), *storage])
    assert exported.exit_code == 0 and "(torch.optim.Optimizer)" in (tmp_path / "found.py").read_text(), exported.output


def test_the_suites_docs_cli_lists_are_the_suites() -> None:
    import re

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text().split())
    for suite, names in SUITES.items():
        listed = re.search(rf"`{suite}` is ([a-z0-9, -]+?)[;(]", text)
        assert listed is not None and [n.strip() for n in listed.group(1).split(",")] == list(names), suite


def test_an_accuracy_is_the_share_counted_right_so_equal_counts_are_equal_results() -> None:
    """Two optimizers that got 603 of 2000 right had 0.30150000417 and 0.30149999690 (float32 batch means),
    and the scoreboard gave the task to one of them."""
    from l2l.nas.data import Split
    from l2l.optsearch.trainer import evaluate_split

    task = BUILTIN["digits-logreg"]
    y = torch.arange(2000) % 10
    for seed in (0, 1):  # two different sets of 603 right answers, scored in batches of 512
        right = torch.randperm(2000, generator=torch.Generator().manual_seed(seed))[:603]
        guess = (y + 1) % 10
        guess[right] = y[right]
        split = Split(torch.nn.functional.one_hot(guess, 10).float(), y)
        assert evaluate_split(task, torch.nn.Identity(), split)[1] == 603 / 2000


def test_a_plugin_task_may_give_its_options_as_a_dict_and_no_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dict of options was taken by `optimizers evaluate` and broke `optimizers tasks` with a traceback; a task
    without a kind was listed as "(user): ; problem"."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    code = PLUGIN.replace('kind="user plugin"', 'options={"width": 6}')
    install_task_plugin(tmp_path, monkeypatch, code)
    (task,) = resolve_suite("user")
    hidden = list(task.build(0).children())[1]  # Flatten, then the first Linear
    assert task.options == (("width", 6),) and isinstance(hidden, torch.nn.Linear) and hidden.out_features == 6
    listed = CliRunner().invoke(app, ["optimizers", "tasks"])
    text = " ".join(listed.output.split())
    assert listed.exit_code == 0, listed.output
    assert "tiny-digits (user): problem digits, model l2l_tiny_tasks:tiny_net (width 6), loss" in text
