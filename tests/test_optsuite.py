"""The optimizer task suite: tasks as data, fixed splits, seeded runs, divergence, suites and task plugins."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from l2l.optsearch.suite import BUILTIN, ENTRY_POINT_GROUP, SUITES, TaskError, all_tasks, resolve_suite
from l2l.optsearch.trainer import Diverged, SuiteTask, train_run


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
                "task 'odd' cannot run: ProblemError: unknown problem 'nosuchproblem'"),
    "loss_for_the_targets": ('[SuiteTask("odd", "friedman", "mlp", "cross_entropy", "accuracy", 8, 8)]',
                             "task 'odd': problem 'friedman' has real-valued targets; its loss is mse"),
    "raises_when_called": ("(_ for _ in ()).throw(RuntimeError('boom in call'))",
                           "failed to load: RuntimeError('boom in call')"),
    "names_not_tasks": ('["digits-mlp"]', "gave a list holding str; expected a SuiteTask, a sequence of them"),
}  # fmt: skip


@pytest.mark.parametrize("mistake", list(BROKEN))
def test_a_broken_task_plugin_is_one_error_before_any_training_and_spares_the_builtins(
    mistake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value, message = BROKEN[mistake]
    install_task_plugin(
        tmp_path, monkeypatch, f"from l2l.optsearch.trainer import SuiteTask\n\ndef tasks():\n    return {value}\n"
    )
    with pytest.raises(TaskError) as error:
        resolve_suite("user")
    assert message in str(error.value)
    warnings: list[str] = []
    if mistake == "raises_when_called":  # the plugin never loads: built-in suites go on without it, warned
        assert [t.name for t in resolve_suite("heldout", warnings.append)] == list(SUITES["heldout"])
        assert len(warnings) == 1 and message in warnings[0] and warnings[0].endswith("its tasks are left out")


def test_two_plugins_defining_one_task_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_task_plugin(tmp_path, monkeypatch)
    install_task_plugin(tmp_path, monkeypatch, PLUGIN, module="l2l_tiny_again")
    with pytest.raises(TaskError, match="task 'tiny-digits' is defined by two plugins: l2l_tiny_"):
        all_tasks()


def test_a_task_registered_by_entry_point_joins_the_user_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_task_plugin(tmp_path, monkeypatch)
    assert "tiny-digits" in all_tasks()
    (task,) = resolve_suite("user")
    assert task.name == "tiny-digits"
    run = train_run(task, _adam, 1e-2, seed=0)
    assert 0.0 <= run.test_metric <= 1.0
