"""The `l2l` command line through Typer's CliRunner, and the speed of `l2l --help`."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from l2l.runs.cli import app
from tests.conftest import PLUGINS

runner = CliRunner()


@pytest.fixture()
def storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_help_is_fast_and_lazy() -> None:
    code = (
        "import sys, l2l.runs.cli; sys.argv=['l2l', '--help']\ntry:\n l2l.runs.cli.main()\nexcept SystemExit: pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'sqlalchemy', 'matplotlib', 'sklearn') if m in sys.modules))"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    elapsed = time.perf_counter() - started
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "search" in out.stdout and "runs" in out.stdout
    assert elapsed < 1.0


def test_every_command_has_help() -> None:
    for args in (
        ["search"],
        ["spaces", "list"],
        ["spaces", "show"],
        ["runs", "list"],
        ["runs", "show"],
        ["runs", "top"],
        ["runs", "export"],
        ["plot", "progress"],
        ["plot", "optimizer"],
        ["plot", "pareto"],
        ["plot", "arch"],
        ["runs", "best"],
        ["optimizers", "top"],
        ["optimizers", "export"],
        ["dashboard"],
    ):
        out = ok(*args, "--help")
        assert "Usage" in out


def test_spaces_list_and_show() -> None:
    out = ok("spaces", "list")
    assert "toy" in out and "mlp" in out
    out = ok("spaces", "show", "toy", "-S", "layers=2")
    assert "skip_1" in out and "5 tokens" in out and "288 candidates" in out
    assert "`layers` (3)" in out and "``" not in out  # the docstring's reST quotes, as a terminal shows code
    assert "weight sharing: no\n" in out  # toy offers no shared network
    assert "costs each child reports: none declared (SearchSpace.cost_metrics)" in out
    assert "costs each child reports: params, flops, train_time_s\n" in ok("spaces", "show", "word_lm")
    # a count past the digits Python prints was a traceback; one candidate is singular
    assert "30 tokens, about 9.3e20 candidates" in ok("spaces", "show", "placement", "-S", "groups=30")
    from l2l.runs.cli.spaces import _many

    assert _many(5**100_000, "candidates") == "about 1.0e69897 candidates"
    assert "16 tokens, 1 candidate\n" in ok("spaces", "show", "placement", "-S", "devices=cpu")
    assert "weight sharing: yes (l2l search --space macro --weight-sharing)" in ok("spaces", "show", "macro")
    # nb201 stores only the options that differ from its defaults; show names every one a user can set
    assert "options: {'dataset': 'cifar100', 'canonical': False, 'noise': 0.0}" in ok(
        "spaces", "show", "nb201", "-S", "dataset=cifar100"
    )
    out = ok("spaces", "show", "rnn_cell", "-S", "hashed=true")
    assert "weight sharing: no (rnn_cell with hashed=true offers no shared network" in out


def test_search_then_inspect_export_and_plot(storage: str, tmp_path: Path) -> None:
    out = ok("search", "--space", "toy", "--children", "12", "--batch", "4", "--seed", "3", "--storage", storage)
    assert "run 1" in out and "12 children trained, 0 failed" in out
    out = ok("runs", "list", "--storage", storage)
    assert "toy" in out and "12/12" in out and "done" in out
    out = ok("runs", "show", "1", "--storage", storage)
    assert "status: done" in out and "12 done" in out and "3 updates" in out
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.search(rf"created {stamp}, finished {stamp}, driven by [^\n]+:\d+\n", out)  # one format for both
    out = ok("runs", "top", "1", "-k", "3", "--storage", storage)
    assert out.count("op_0=") == 3
    out = ok("runs", "export", "1", "--format", "csv", "--storage", storage)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 12 and rows[0]["status"] == "done" and rows[0]["tokens"]
    target = tmp_path / "x" / "run.json"
    ok("runs", "export", "1", "--format", "json", "-o", str(target), "--storage", storage)
    data = json.loads(target.read_text())
    assert len(data["children"]) == 12 and len(data["updates"]) == 3 and data["run"]["seed"] == 3
    # times in ISO 8601 UTC, as the dashboard shows them (SQLite's were "2026-12-07 11:44:32.8", PostgreSQL's "+00:00")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", data["run"]["created_at"])
    assert data["children"][0]["finished_at"].endswith("+00:00")
    png = tmp_path / "p" / "progress.png"
    ok("plot", "progress", "1", "-o", str(png), "--storage", storage)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_config_file_and_options(storage: str, tmp_path: Path) -> None:
    cfg = tmp_path / "search.toml"
    cfg.write_text(
        'space = "toy"\nchildren = 6\nbatch = 3\nseed = 8\n[space_options]\nlayers = 2\n[controller]\npreset = "enas"\n'
    )
    ok(
        "search",
        "--config",
        str(cfg),
        "--children",
        "4",
        "-C",
        "lr=0.01",
        "--executor",
        "local",
        "--storage",
        storage,
        "-q",
    )
    out = ok("runs", "show", "1", "--storage", storage)
    assert '"children": 4' in out and '"layers": 2' in out and '"preset": "enas"' in out and '"lr": 0.01' in out


def test_search_with_failures_reports_them(storage: str) -> None:
    out = ok(
        "search",
        "--space",
        f"{PLUGINS / 'spaces.py'}:Flaky",
        "--strategy",
        "random",
        "--children",
        "30",
        "--storage",
        storage,
    )
    assert "failed: RuntimeError: child exploded on purpose" in out and "failed: reward is nan" in out


def test_a_file_plugin_searched_by_a_relative_path_is_read_back_from_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine.py").write_text((PLUGINS / "spaces.py").read_text())
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    monkeypatch.chdir(tmp_path)
    ok(
        "search",
        "--space",
        "mine.py:Flaky",
        "--strategy",
        "random",
        "-n",
        "3",
        "--executor",
        "local",
        "-q",
        "--storage",
        storage,
    )
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    shown = " ".join(ok("runs", "show", "1", "--storage", storage).split())
    assert f'"space": "{tmp_path / "mine.py"}:Flaky"' in shown  # stored with its absolute path
    best = " ".join(ok("runs", "best", "1", "--storage", storage).split())
    assert re.search(r"best of run 1: .*: x=(good|ok)$", best)  # the space was rebuilt to describe it


def test_export_takes_its_format_from_the_file_and_best_names_a_run_whose_children_all_failed(
    tmp_path: Path, storage: str
) -> None:
    broken = ["search", "--space", f"{PLUGINS / 'spaces.py'}:Broken", "--strategy", "random", "-n", "2"]
    assert runner.invoke(app, [*broken, "--executor", "local", "--storage", storage]).exit_code == 1
    flaky = ["search", "--space", f"{PLUGINS / 'spaces.py'}:Flaky", "--strategy", "random", "-n", "4"]
    ok(*flaky, "--executor", "local", "-q", "--storage", storage)
    ok("runs", "export", "2", "-o", str(tmp_path / "x.json"), "--storage", storage)
    assert json.loads((tmp_path / "x.json").read_text())["run"]["id"] == 2
    ok("runs", "export", "2", "-o", str(tmp_path / "x.csv"), "--storage", storage)
    assert (tmp_path / "x.csv").read_text().startswith("number,")
    here = os.getcwd()
    try:  # -o - is stdout, not a file named "-"
        os.chdir(tmp_path)
        assert ok("runs", "export", "2", "-o", "-", "--storage", storage) == (tmp_path / "x.csv").read_text()
        assert not (tmp_path / "-").exists()
    finally:
        os.chdir(here)
    from l2l.runs.store import Store

    assert Store(storage).get_run(1).status == "failed"  # nothing to name: not "done" (the dashboard says failed)
    assert Store(storage).get_run(1).error == "no child succeeded (2 failed)"
    again = runner.invoke(app, ["search", "--resume", "1", "--storage", storage])
    assert again.exit_code == 1 and "run 1 ended with every child recorded (2 failed, 0 done); nothing to resume" in (
        " ".join(again.output.split())
    )
    expected = "no child of run 1 succeeded (2 failed; each one's reason: `l2l runs child 1 N`)"
    for command in (["best"], ["best", "--by", "single"], ["top"], ["top", "--by", "single"]):
        result = runner.invoke(app, ["runs", command[0], "1", *command[1:], "--storage", storage])
        assert result.exit_code == 1 and expected in " ".join(result.output.split()), command
    # one failure's whole record: the traceback no other command printed
    shown = " ".join(ok("runs", "show", "1", "--storage", storage).split())
    assert (
        "failures: 2 of 2: " in shown and f"`l2l runs child 1 0 --storage {storage}`" in shown
    )  # the first with that reason
    child = ok("runs", "child", "1", "1", "--storage", storage)
    assert child.startswith("child 1 of run 1: failed, batch ") and "Traceback (most recent call last):" in child
    flaky_child = ok("runs", "child", "2", "0", "--storage", storage)
    assert "reward " in flaky_child and "ran: worker" in flaky_child
    missing = runner.invoke(app, ["runs", "child", "2", "9", "--storage", storage])
    assert missing.exit_code == 1 and "run 2 has no child 9 (its children are numbered 0 to 3)" in missing.output


def test_the_most_common_failure_groups_reasons_that_differ_only_in_numbers() -> None:
    from l2l.runs.cli.common import most_common_failure

    errors = [
        "RuntimeError: failed to allocate 1048576 bytes\nTraceback ...",
        "ValueError: bad width",
        "RuntimeError: failed to allocate 2097152 bytes",
        "RuntimeError: failed to allocate 3.5 bytes",
        "RuntimeError: failed to allocate 4 GiB",  # other words: another reason
        "ValueError: bad width",
        None,
    ]
    varied = "(the first; the others differ only in their numbers or what they quote)"
    assert most_common_failure(errors) == (f"RuntimeError: failed to allocate 1048576 bytes {varied}", 3, 0)
    assert most_common_failure([None]) == ("unknown", 1, 0)
    assert most_common_failure(["ValueError: bad width"] * 2) == ("ValueError: bad width", 2, 0)  # alike: as it is
    # each optimizer rule's failure quotes its rule: one reason, and the position of a child that has it
    rules = ["ValueError: bad", "ArithmeticError: rule 'g sign' diverged", "ArithmeticError: rule 'm 2 mul' diverged"]
    assert most_common_failure(rules) == (f"ArithmeticError: rule 'g sign' diverged {varied}", 2, 1)


def test_best_of_an_exact_space_says_a_retraining_trained_nothing(storage: str) -> None:
    ok("search", "--space", "toy", "--children", "4", "--executor", "local", "-q", "--storage", storage)
    best = ok("runs", "best", "1", "--storage", storage)
    assert re.search(r"best of run 1: child \d+, reward [\d.]+: op_0=", best)  # no stray "-" for absent figures
    again = " ".join(ok("runs", "best", "1", "--retrain", "--epochs", "3", "--storage", storage).split())
    assert "evaluated again (space 'toy' has exact rewards: nothing was trained, --epochs/--steps ignored)" in again


def test_ctrl_c_before_the_first_child_finishes_keeps_the_run_it_names(storage: str) -> None:
    space = f"{PLUGINS / 'spaces.py'}:Interrupted"
    args = ["search", "--space", space, "--strategy", "random", "--children", "4", "--executor", "local"]
    result = runner.invoke(app, [*args, "--storage", storage])
    assert result.exit_code == 130, result.output
    line = " ".join(result.output.split())  # the command to run names the store it ran on
    assert f"run 1 interrupted; continue it with: l2l search --resume 1 --storage {storage}" in line
    shown = ok("runs", "show", "1", "--storage", storage)  # not deleted as a run that failed before starting
    assert "status: interrupted" in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--space", "nope"], "unknown search space 'nope'; known:"),
        (["search", "--space", "toy", "--strategy", "ppo2"], "unknown strategy 'ppo2'"),
        (["search", "--space", "toy", "-C", "lrr=1"], "unknown reinforce setting(s) ['lrr']"),
        (["search", "--space", "toy", "-C", "lrr=1"], "reinforce+screen also takes: screen, screen_members,"),
        (["search", "--space", "toy", "-S", "layers"], "--space-option expects KEY=VALUE, got 'layers'"),
        (["search", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
        (
            ["search", "--resume", "1", "--space", "mlp"],
            "--resume continues run 1 with its stored settings; drop --space",
        ),
        (["search", "--resume", "5"], "no run 5 in store"),
        (["runs", "show", "7"], "no run 7 in store"),
        (["runs", "export", "1", "--format", "xml"], "--format must be csv or json, got 'xml'"),
        (["runs", "export", "1", "-o", "x.xlsx"], "cannot tell the format of 'x.xlsx': name it .csv or .json, or"),
        (["runs", "export", "1", "-o", "/proc/x.csv"], "cannot use '/proc/x.csv': no such file or directory"),
        (["plot", "progress", "1", "-o", "/proc/x.png"], "cannot use '/proc/x.png': no such file or directory"),
        (["search", "--config", "/proc"], "config file '/proc' cannot be read: Is a directory"),
        (
            ["search", "--space", "nb201_cell", "--weight-sharing", "-W", "lr=nan"],
            "weight-sharing setting lr must be a number, got nan",
        ),
        (
            ["search", "--space", "nb201_cell", "--weight-sharing", "-W", "momentum=2"],
            "momentum must be in [0, 1), got 2",
        ),
        (
            ["search", "--space", "nb201_cell", "--weight-sharing", "-W", "schedule=step"],
            "weight sharing: unknown schedule 'step'; known: constant, cosine",
        ),
        (
            ["search", "--space", "nb201_cell", "--weight-sharing", "-W", "score=acc"],
            "weight sharing: unknown score 'acc'; known: auto, loss, reward",
        ),
        (["runs", "best", "1", "--retrain", "--device", "nope"], "--device 'nope' is not a torch device"),
    ],
)
def test_user_errors_are_one_clear_line(storage: str, args: list[str], message: str) -> None:
    # run 1, for the commands that read one: trained in this process (an embedded Ray took ~8 s a case)
    ok("search", "--space", "toy", "--children", "2", "--executor", "local", "--storage", storage, "-q")
    result = runner.invoke(app, [*args, "--storage", storage])
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_bad_storage_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["runs", "list", "--storage", f"sqlite:///{tmp_path}/no/dir/x.db"])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output
    typo = tmp_path / "typo.db"
    for command in (["runs", "list"], ["runs", "show", "1"], ["plot", "progress", "1"]):
        result = runner.invoke(app, [*command, "--storage", f"sqlite:///{typo}"])
        assert result.exit_code == 1 and f"the file '{typo}' does not exist (a search creates it)" in result.output
    assert not typo.exists()  # reading a misspelt path leaves no empty store behind


def test_children_flag_is_validated(storage: str) -> None:
    result = runner.invoke(app, ["search", "--space", "toy", "--children", "0", "--storage", storage])
    assert result.exit_code == 2


def test_plot_benchmark(tmp_path: Path) -> None:
    payload = {"dataset": "cifar10", "seeds": 2, "curves": {"a": {"mean": [90.0, 91.0, 92.0], "sd": [1.0, 0.5, 0.1]}}}
    src = tmp_path / "r.json"
    src.write_text(json.dumps(payload))
    png = tmp_path / "b.png"
    ok("plot", "benchmark", str(src), "-o", str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"
    src.write_text("{}")
    result = runner.invoke(app, ["plot", "benchmark", str(src), "-o", str(png)])
    assert result.exit_code == 1 and "has no 'curves'" in result.output


def test_optimizer_search_top_export_and_plot(storage: str, tmp_path: Path) -> None:
    import importlib.util

    import torch

    common = ["--storage", storage]
    ok("search", "--space", "optimizer", "-n", "6", "-m", "3", "-S", "epochs=1", "-S", "lrs='0.01'", "-q", *common)
    out = ok("optimizers", "top", "1", "-k", "2", *common)
    assert "lr *" in out and "rank" in out
    path = tmp_path / "best_opt.py"
    out = ok("optimizers", "export", "1", "--rank", "1", "-o", str(path), "--name", "Best", *common)
    assert "class Best" in out
    spec = importlib.util.spec_from_file_location("best_opt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    w = torch.nn.Parameter(torch.ones(4))
    w.grad = torch.full((4,), 0.5)
    module.Best([w], lr=0.01, total_steps=10).step()
    assert torch.isfinite(w).all()
    out = ok("plot", "optimizer", "1", "-o", str(tmp_path / "plots"), "--top", "1", "--lrs", "0.01", *common)
    for name in ("run1_update_heatmaps.png", "run1_training_curves.png", "run1_optimizer_summary.json"):
        assert (tmp_path / "plots" / name).stat().st_size > 0
    summary = json.loads((tmp_path / "plots" / "run1_optimizer_summary.json").read_text())
    assert set(summary["tasks"]) == {"digits-cnn", "synthetic-mlp"}
    labels = [c["label"] for c in summary["tasks"]["synthetic-mlp"]]
    assert labels[-2:] == ["sgd-momentum", "adam"]
    said = " ".join(out.split())
    assert "training 1 rule and 2 baselines at up to 1 learning rate each on 2 tasks (6 sweeps" in said
    # on the children's task as they trained on it: -S epochs=1, not the task's default 3
    assert {len(c["curves"]["val_acc"]) for c in summary["tasks"]["digits-cnn"] if c["curves"]} == {1}
    # the same rules, grid and tasks again: the training is reused, not repeated
    again = ok("plot", "optimizer", "1", "-o", str(tmp_path / "plots"), "--top", "1", "--lrs", "0.01", *common)
    assert "reusing the training in" in " ".join(again.split()) and "sweeps" not in again
    assert json.loads((tmp_path / "plots" / "run1_optimizer_summary.json").read_text())["tasks"] == summary["tasks"]
    fresh = ok("plot", "optimizer", "1", "-o", str(tmp_path / "plots"), "--top", "1", "--lrs", "0.1", *common)
    assert "reusing" not in fresh  # another grid trains again
    # errors name the problem
    ok("search", "--space", "toy", "-n", "2", "--executor", "local", "-q", *common)
    bad = runner.invoke(app, ["optimizers", "top", "2", *common])
    assert bad.exit_code == 1 and "searched the space 'toy', not optimizer rules" in bad.output
    bad = runner.invoke(app, ["optimizers", "export", "1", "--rank", "50", *common])
    assert bad.exit_code == 1 and "--rank 50 does not exist" in bad.output
    # a class name the file could not hold: a keyword, or a name its own code reads (the class would hide it)
    for name, why in (("class", "is a Python keyword"), ("torch", "is a name the exported file uses itself")):
        bad = runner.invoke(app, ["optimizers", "export", "1", "-o", str(tmp_path / "x.py"), "--name", name, *common])
        assert bad.exit_code == 1 and f"--name: {name!r} {why}" in bad.output and not (tmp_path / "x.py").exists()
    bad = runner.invoke(app, ["plot", "optimizer", "1", "--lrs", "fast", *common])
    assert bad.exit_code == 1 and "--lrs expects comma-separated numbers" in bad.output


def test_runs_show_follow_refreshes_until_the_run_stops(storage: str) -> None:
    import threading

    from l2l.runs.store import Store

    ok("search", "--space", "toy", "-n", "4", "-m", "2", "--executor", "local", "-q", "--storage", storage)
    store = Store(storage)
    store.set_run_status(1, "running")
    timer = threading.Timer(1.0, store.set_run_status, args=(1, "done"))
    timer.start()
    started = time.perf_counter()
    out = ok("runs", "show", "1", "--follow", "--interval", "0.2", "--storage", storage)
    timer.join()
    assert time.perf_counter() - started >= 0.9  # it waited for the run to stop
    assert "children: 4 done" in out and "child 3 done reward" in out


def test_runs_show_follow_says_a_store_that_stops_answering_and_goes_on_when_it_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`runs show --follow` ended with an error at the first blip of a PostgreSQL server; the dashboard waits."""
    from l2l.runs.cli.progress import follow
    from l2l.runs.store import RunNotFound, StoreError

    polls = [0]

    def running() -> bool:
        polls[0] += 1
        if polls[0] in (2, 3):
            raise StoreError("store x: read run failed: connection refused")
        return polls[0] < 5

    follow(lambda: [f"poll {polls[0]}"], running, 0.01)
    out = capsys.readouterr().out
    said = "the store does not answer: store x: read run failed: connection refused; asking again every 0.01 s"
    assert out.count(said) == 1 and out.index("poll 1") < out.index(said) < out.index("poll 4") < out.index("poll 5")

    def deleted() -> bool:  # a run deleted meanwhile is no blip: it ends
        raise RunNotFound("no run 1 in store")

    with pytest.raises(RunNotFound):
        follow(lambda: [], deleted, 0.01)


def test_runs_show_follow_into_a_file_writes_as_the_run_changes(storage: str, tmp_path: Path) -> None:
    """`runs show --follow > log` wrote nothing until the run ended: a live display needs a terminal."""
    from l2l.runs.store import Store

    ok("search", "--space", "toy", "-n", "4", "-m", "2", "--executor", "local", "-q", "--storage", storage)
    Store(storage).set_run_status(1, "running")
    log = (tmp_path / "follow.log").open("w")
    code = "from l2l.runs.cli import main; main()"
    args = [sys.executable, "-c", code, "runs", "show", "1", "--follow", "--interval", "0.2", "--storage", storage]
    follower = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "children: 4 done" not in (tmp_path / "follow.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert follower.poll() is None, "it stopped while the run was running"  # written while it follows
        assert "children: 4 done" in (tmp_path / "follow.log").read_text()
        Store(storage).set_run_status(1, "done")
        assert follower.wait(timeout=60) == 0
    finally:
        follower.kill()
        log.close()
    text = (tmp_path / "follow.log").read_text()
    assert text.count("children: 4 done") == 2 and "status: done" in text  # once running, once as it stopped


def test_search_help_names_every_strategy_and_the_default() -> None:
    from l2l.controllers import DEFAULT_STRATEGY, STRATEGIES
    from l2l.runs.cli.search import STRATEGY_HELP

    assert STRATEGY_HELP.startswith(DEFAULT_STRATEGY + " (the default")
    assert all(f" {name}," in STRATEGY_HELP or f" {name};" in STRATEGY_HELP for name in STRATEGIES)


HANDED = "children: 0 done, 0 failed, {}, 2 queued, of 8"


@pytest.mark.parametrize(
    ("executor", "options", "status", "line"),
    [
        ("local", {}, None, HANDED.format("1 running, 5 waiting in the search's process")),
        ("ray", {"max_concurrent": 4}, None, HANDED.format("4 running, 2 waiting at a worker")),
        ("ray", {}, None, HANDED.format("6 at workers (running or waiting)")),
        # a run that stopped runs nothing: what it had handed out is unfinished
        ("local", {}, "failed", HANDED.format("6 unfinished (--resume trains them again)")),
    ],
)
def test_runs_show_counts_children_waiting_behind_a_running_one_apart(
    storage: str, executor: str, options: dict[str, int], status: str | None, line: str
) -> None:
    from l2l.runs.store import NewChild, Store

    store = Store(storage)
    config = {"executor": executor, "executor_options": options}
    run = store.create_run(space="toy", strategy="random", config=config, seed=0, n_children=8, code_version="x")
    kids = [NewChild(n, 0, (0,), {}, 0.0, 0.0, 0) for n in range(8)]
    store.add_children(run, kids[:6], running=True)  # handed to the executor: it runs 1 (local) or 4 at once
    store.add_children(run, kids[6:])
    if status:
        store.set_run_status(run, status)
    assert line in " ".join(ok("runs", "show", str(run), "--storage", storage).split())


def test_help_shows_the_defaults_written_in_brackets() -> None:
    # Rich reads [...] as markup and would drop it unescaped
    shown = " ".join(runner.invoke(app, ["search", "--help"], env={"COLUMNS": "400"}).output.split())
    for text in ("[env L2L_STORAGE; default sqlite:///l2l.db]", "[default: embedded]", "[default: 1]"):
        assert text in shown, text
    plot = " ".join(runner.invoke(app, ["plot", "optimizer", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "[default: 1e-4..1 for a run of one task, the scoreboard's 1e-5..10 for a suite run]" in plot


def test_the_nodes_line_counts_children_per_node_and_retries() -> None:
    from types import SimpleNamespace

    from l2l.runs.cli.formatting import placement_line

    kids = [SimpleNamespace(node=n, attempts=a) for n, a in (("aaaaaaaa11", 1), ("aaaaaaaa22", 2), ("bbbbbbbb", 1))]
    assert (
        placement_line(kids)
        == "nodes: aaaaaaaa (2 children), bbbbbbbb (1 child); 1 ran more than once (1 extra attempt)"
    )
    assert placement_line([SimpleNamespace(node=None, attempts=1)]) is None
    local = [SimpleNamespace(node=None, attempts=1), SimpleNamespace(node=None, attempts=3)]  # no Ray: no nodes
    assert placement_line(local) == "1 ran more than once (2 extra attempts)"


def test_only_an_unknown_key_lists_the_wrappers_settings(storage: str) -> None:
    result = runner.invoke(app, ["search", "--space", "toy", "-C", "preset=foo", "--storage", storage])
    assert result.exit_code == 1
    assert result.output.strip() == "error: unknown controller preset 'foo'; known: zoph_le, enas"


def test_output_to_a_pipe_is_not_cut_at_80_columns() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code = "from l2l.runs.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code, "spaces", "show", "toy"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert max(len(line) for line in out.stdout.splitlines()) > 80  # the docstring's long lines, whole


def test_optimizers_on_a_run_whose_plugin_is_gone_say_what_they_read(tmp_path: Path, storage: str) -> None:
    plugin = tmp_path / "gone.py"
    plugin.write_text((PLUGINS / "spaces.py").read_text())
    ok(
        "search",
        "--space",
        f"{plugin}:Flaky",
        "--strategy",
        "random",
        "-n",
        "2",
        "--executor",
        "local",
        "-q",
        "--storage",
        storage,
    )
    plugin.unlink()
    result = runner.invoke(app, ["optimizers", "top", "1", "--storage", storage])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"cannot rebuild the space '{plugin}:Flaky' of run 1" in text
    assert text.endswith("; `l2l optimizers` reads runs of the optimizer space")


def test_ray_logs_of_two_stores_runs_keep_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store has a run 1: Ray's log folder is per store (a SQLite file by its absolute path), and names
    no password."""
    from l2l.runs.cli.common import run_log_file
    from l2l.runs.store import Store

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Store(f"sqlite:///{tmp_path / 'a' / 'l2l.db'}"), Store(f"sqlite:///{tmp_path / 'b' / 'l2l.db'}")
    monkeypatch.chdir(tmp_path / "a")
    relative = Store("sqlite:///l2l.db")
    logs = tmp_path / "logs"
    first, second, again = (run_log_file(logs, s, 1) for s in (a, b, relative))
    assert first.parent != second.parent and first.parent == again.parent
    assert first.parent.name == "run-1" and first.parent.parent.name.startswith("l2l.db-")
    remote: Any = SimpleNamespace(url="postgresql+psycopg://me:secret123@db.example:5432/searches")
    path = run_log_file(logs, remote, 7)  # only the URL is read: no server needed
    assert path.parent.parent.name.startswith("searches-") and "secret123" not in str(path)


def test_a_retraining_budget_the_space_does_not_train_by_is_refused(storage: str) -> None:
    from l2l.runs.cli.retraining import retrain_budget
    from l2l.runs.config import UsageError
    from l2l.search_spaces import load_space

    cells = load_space("nb201_cell", {}, validate=False)
    with pytest.raises(UsageError, match="'nb201_cell' trains its children for epochs: --steps does not apply; use"):
        retrain_budget(cells, "nb201_cell", None, 5, run_id=1)
    assert retrain_budget(cells, "nb201_cell", 3, None, run_id=1) == {"epochs": 3}
    with pytest.raises(UsageError, match="--epochs does not apply; use --steps"):
        retrain_budget(load_space("rnn_cell", {}, validate=False), "rnn_cell", 2, None, run_id=1)
    noisy = load_space("toy", {"noise": 0.1})  # trains nothing: a budget would change nothing
    with pytest.raises(UsageError, match=r"'toy' declares no training budget \(SearchSpace.budget_keys\): --epochs"):
        retrain_budget(noisy, "toy", 30, None, run_id=1)
    assert retrain_budget(noisy, "toy", None, None, run_id=1) == {}
    # a suite's rewards are tuned at a fixed seed: retraining would repeat them, whatever --epochs or --seed says
    rules = load_space("optimizer", {"suite": "digits-logreg"}, validate=False)
    refusal = r"run 7 is not retrained: .* `l2l optimizers evaluate 7:RANK --suite heldout`"
    with pytest.raises(UsageError, match=refusal):
        retrain_budget(rules, "optimizer", None, None, run_id=7)
    assert retrain_budget(load_space("optimizer", {}, validate=False), "optimizer", 2, None, run_id=1) == {"epochs": 2}
    ok("search", "--space", "toy", "--children", "2", "--executor", "local", "-q", "--storage", storage)
    alone = runner.invoke(app, ["runs", "best", "1", "--epochs", "3", "--storage", storage])
    assert alone.exit_code != 0 and "--epochs and --steps are the budget of a retraining: add --retrain" in alone.output
    assert "best of run" not in alone.output  # refused before anything is shown
    refused = runner.invoke(app, ["runs", "best", "1", "--retrain", "--device", "gpu", "--storage", storage])
    assert refused.exit_code == 1 and "best of run" not in refused.output, refused.output
    assert "--device 'gpu' is not a torch device" in refused.output


def test_a_config_file_whose_table_is_not_a_table_is_one_line(storage: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("space_options = 3\n")
    result = runner.invoke(app, ["search", "--config", str(bad), "--storage", storage])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "config file: space_options must be a table ([space_options] or space_options = {...}), got 3" in " ".join(
        result.output.split()
    )


def test_reading_another_programs_database_adds_nothing_to_it(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    result = runner.invoke(app, ["runs", "list", "--storage", f"sqlite:///{other}"])
    assert result.exit_code != 0 and "the database holds other tables (notes) and none of l2l's" in result.output
    with sqlite3.connect(other) as db:
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_reading_an_empty_database_leaves_it_empty(tmp_path: Path) -> None:
    """`runs list` on an empty file or database gave it l2l's tables (a wrong --storage, a server's postgres)."""
    empty = tmp_path / "empty.db"
    empty.touch()
    result = runner.invoke(app, ["runs", "list", "--storage", f"sqlite:///{empty}"])
    assert result.exit_code == 1 and "the database is empty (a search creates one)" in result.output, result.output
    import sqlite3

    with sqlite3.connect(empty) as db:
        assert list(db.execute("SELECT name FROM sqlite_master")) == []  # no table of l2l's


@pytest.mark.postgres
def test_reading_an_empty_postgresql_schema_leaves_it_empty(postgres_url: str) -> None:
    import uuid

    import sqlalchemy

    from tests.conftest import POSTGRES_URL

    schema = f"l2l_empty_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        for command in (["runs", "list"], ["runs", "show", "1"], ["plot", "progress", "1"]):
            result = runner.invoke(app, [*command, "--storage", url])
            assert result.exit_code == 1 and "the database is empty (a search creates one)" in result.output
        with admin.connect() as conn:
            tables = conn.execute(
                sqlalchemy.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
            ).scalar()
        assert tables == 0
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_a_config_file_cannot_write_the_moves_that_resume_records(storage: str, tmp_path: Path) -> None:
    """A file's ``moves`` went into the new run's record as if --resume had moved it."""
    moved = tmp_path / "moved.toml"
    moved.write_text('space = "toy"\nchildren = 1\nexecutor = "local"\nmoves = [{when = "x", from = "a", to = "b"}]\n')
    result = runner.invoke(app, ["search", "--config", str(moved), "--storage", storage])
    assert result.exit_code == 1 and "unknown search setting(s) ['moves']; known: batch," in result.output
    assert "moves" not in result.output.split("known:")[1]


def test_a_config_file_batch_of_0_is_refused_not_replaced(storage: str, tmp_path: Path) -> None:
    zero = tmp_path / "zero.toml"
    zero.write_text('space = "toy"\nbatch = 0\n')
    result = runner.invoke(app, ["search", "--config", str(zero), "--storage", storage])
    assert result.exit_code != 0 and "config file: batch must be >= 1" in result.output


def test_a_strategy_without_a_policy_shows_no_entropy(storage: str) -> None:
    ok(
        "search",
        "--space",
        "toy",
        "--strategy",
        "evolution",
        "-n",
        "6",
        "--executor",
        "local",
        "-q",
        "--storage",
        storage,
    )
    shown = " ".join(runner.invoke(app, ["runs", "show", "1", "--storage", storage]).output.split())
    assert "entropy - (the strategy has no policy)" in shown and "entropy 0.000" not in shown
    ok(
        "search",
        "--space",
        "toy",
        "--strategy",
        "reinforce",
        "-n",
        "4",
        "--executor",
        "local",
        "-q",
        "--storage",
        storage,
    )
    assert "entropy - " not in runner.invoke(app, ["runs", "show", "2", "--storage", storage]).output


def test_runs_are_listed_by_status_space_and_name_and_deleted_with_confirmation(tmp_path: Path) -> None:
    from l2l.runs.store import Store

    db = f"sqlite:///{tmp_path / 'team.db'}"
    for space, name in (("toy", "alice-toy"), ("toy", "bob-toy"), ("nb201", "alice-nb")):
        ok("search", "--space", space, "-n", "2", "--executor", "local", "-q", "--name", name, "--storage", db)
    store = Store(db)
    store.set_run_status(2, "interrupted")

    def listed(*args: str) -> list[str]:
        out = runner.invoke(app, ["runs", "list", *args, "--storage", db], env={"COLUMNS": "200"}).output
        rows = [line.split("│") for line in out.splitlines() if line.startswith("│")]
        return [r[2].strip() for r in rows if r[1].strip().isdigit()]

    assert listed() == ["alice-nb", "bob-toy", "alice-toy"]
    assert listed("--space", "toy") == ["bob-toy", "alice-toy"]
    assert listed("--status", "done", "--name", "alice") == ["alice-nb", "alice-toy"]
    assert listed("--status", "interrupted", "--limit", "5") == ["bob-toy"]
    assert listed("--limit", "2") == ["alice-nb", "bob-toy"]  # and it says the list was cut, not silently
    assert "the newest 2 runs; older ones: --limit N" in ok("runs", "list", "--limit", "2", "--storage", db)
    assert "the newest 1 of the 2 runs that match" in ok(
        "runs", "list", "--space", "toy", "--limit", "1", "--storage", db
    )
    assert "older ones" not in ok("runs", "list", "--limit", "3", "--storage", db)
    assert "no run matches" in ok("runs", "list", "--name", "carol", "--storage", db)
    refused = runner.invoke(app, ["runs", "list", "--status", "paused", "--storage", db])
    assert refused.exit_code == 1 and "unknown status 'paused'; known: running, stale, done" in refused.output
    unconfirmed = runner.invoke(app, ["runs", "delete", "1", "--storage", db], input="")
    assert unconfirmed.exit_code == 1 and "cannot be undone: add --yes" in unconfirmed.output
    missing = runner.invoke(app, ["runs", "delete", "1", "9", "--yes", "--storage", db])  # nothing goes, then
    assert missing.exit_code == 1 and "no run 9" in missing.output and len(store.list_runs()) == 3
    assert "deleted run(s) 1 (toy, 2 done), 3 (nb201, 2 done)" in ok("runs", "delete", "1", "3", "-y", "--storage", db)
    assert [r.id for r in store.list_runs()] == [2] and store.children(1) == []
    import socket

    driver = subprocess.Popen(["sleep", "60"])  # a live process on this machine drives run 2
    try:
        store.claim_run(2, f"{socket.gethostname()}:{driver.pid}")
        store.set_run_status(2, "running")
        live = runner.invoke(app, ["runs", "delete", "2", "--yes", "--storage", db])
        assert live.exit_code == 1 and "run 2 is running: its driver" in live.output and len(store.list_runs()) == 1
    finally:
        driver.kill()
        driver.wait()


def test_a_run_is_named_by_its_id_or_by_its_name_in_every_command_that_takes_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'named.db'}"
    for name in (" baseline ", "twice", "twice"):  # kept as commands find it: stripped
        out = ok("search", "--space", "toy", "-n", "2", "--executor", "local", "-q", "--name", name, "--storage", db)
    # the second "twice" was taken without a word, and the name stopped working for both
    assert "note: run 2 is named 'twice' too: commands now need each one's id, not the name" in " ".join(out.split())
    assert ok("runs", "show", "baseline", "--storage", db).startswith("run 1 ")
    assert ok("runs", "top", "baseline", "--storage", db) == ok("runs", "top", "1", "--storage", db)
    assert "best of run 1:" in ok("runs", "best", "baseline", "--storage", db)
    assert f"wrote {tmp_path / 'p.png'}" in ok(
        "plot", "progress", "baseline", "-o", str(tmp_path / "p.png"), "--storage", db
    )
    twice = runner.invoke(app, ["runs", "show", "twice", "--storage", db])
    assert twice.exit_code == 1 and "2 runs are named 'twice' (runs 2, 3); name one by its id" in twice.output
    unknown = runner.invoke(app, ["runs", "best", "nobody", "--storage", db])
    assert unknown.exit_code == 1 and "no run 'nobody' in store" in unknown.output
    superscript = runner.invoke(app, ["runs", "best", "²", "--storage", db])  # a digit to str.isdigit, not an id
    assert superscript.exit_code == 1 and "no run '²' in store" in superscript.output
    numeric = runner.invoke(
        app, ["search", "--space", "toy", "-n", "2", "--executor", "local", "--name", "7", "--storage", db]
    )
    assert numeric.exit_code == 1 and "the run name '7' is a number, which commands read as a run id" in numeric.output
    assert "deleted run(s) 1 (toy, 2 done)" in ok("runs", "delete", "baseline", "-y", "--storage", db)
    done = runner.invoke(app, ["search", "--resume", "twice", "--storage", db])  # resolved, then refused for twice
    assert done.exit_code == 1 and "2 runs are named 'twice'" in done.output


def test_costs_below_a_thousandth_print_with_an_exponent_and_large_ones_whole() -> None:
    """`runs best` printed a 43-microsecond latency as "latency_s 0.0000"."""
    from l2l.runs.cli.formatting import MetricView

    view = MetricView(cost=("latency_s", "flops", "params"))
    costs = {"cost": {"latency_s": 4.3e-5, "flops": 17890.6, "params": 0.5}}
    assert view.summary(costs, "cost") == "latency_s 4.30e-05, flops 17,891, params 0.5000"


def test_runs_child_prints_a_description_as_it_is_not_escaped_for_markup() -> None:
    """`runs child` printed `8tanh\\[learned 1/2]`: its lines go out without markup, yet were escaped for it."""
    import random
    from types import SimpleNamespace

    from l2l.runs.cli.child import child_lines
    from l2l.search_spaces import load_space
    from l2l.search_spaces.api import token_sizes

    space, rng = load_space("mlp", {"predicted": True}), random.Random(0)
    spec = next(
        s
        for s in (space.decode(tuple(rng.randrange(k) for k in token_sizes(space.decisions()))) for _ in range(200))
        if "[" in space.describe(s)
    )
    run = SimpleNamespace(id=1, space="mlp", config={"space_options": {"predicted": True}})
    child = SimpleNamespace(
        number=0, status="queued", batch=0, attempts=0, spec=spec.to_json(), tokens=space.encode(spec), metrics={},
        worker=None, device=None, node=None, wall_time=None, curves={}, error=None, val_acc=None, val_loss=None,
        reward=None, controller_reward=None,
    )  # fmt: skip
    assert f"architecture: {space.describe(spec)}" in child_lines(run, child)


def test_a_child_that_trained_at_a_lesser_depth_says_so(storage: str) -> None:
    """macro's growing depth: tables described the whole spec, and a reader took 3 layers for trained."""
    from l2l.runs.store import NewChild, Store
    from l2l.search_spaces import load_space

    options = {"layers": 3, "start_layers": 1, "grow_by": 1, "grow_every": 10}
    space = load_space("macro", options)
    spec = space.decode([0] * sum(d.width for d in space.decisions()))
    store = Store(storage)
    run = store.create_run(
        space="macro", strategy="random", config={"space_options": options}, seed=0, n_children=1, code_version="t"
    )
    store.add_children(run, [NewChild(0, 0, space.encode(spec), spec.to_json(), 0.0, 0.0, 0)])
    store.finish_child(run, 0, {"status": "done", "reward": 0.5, "val_acc": 0.5, "info": {"depth": 1}}, 0.5)
    store.set_run_status(run, "done")
    said = " ".join(ok("runs", "best", str(run), "--storage", storage).split())
    assert "(trained at depth 1 of 3: the first layers only)" in said
    assert "(trained at depth 1 of 3" in " ".join(ok("runs", "child", str(run), "0", "--storage", storage).split())


def test_runs_list_of_an_empty_store_says_so(tmp_path: Path) -> None:
    from l2l.runs.store import Store

    Store(url := f"sqlite:///{tmp_path / 'empty.db'}").close()
    assert ok("runs", "list", "--storage", url).strip() == "no runs in this store yet"  # not a bare header


def test_a_transform_that_fails_before_any_child_finished_removes_the_run_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run's number was printed, then the run was deleted without a word (docs said --resume would do)."""
    from l2l.runs.store import Store

    (tmp_path / "bad_transforms.py").write_text("def bad(metrics):\n    raise ValueError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["search", "--space", "toy", "-n", "4", "--executor", "local", "-C", "reward_transform=bad_transforms:bad"]
    out = runner.invoke(app, [*args, "-q", "--storage", storage])
    assert out.exit_code == 1
    assert "error: reward transform 'bad_transforms:bad' failed: nope\n" in out.output
    assert "run 1 was removed: no child finished, so it holds nothing to resume" in out.output
    assert Store(storage).list_runs() == []


def test_rays_log_is_pointed_at_only_where_ray_may_have_had_a_say(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The loser of two resumes at once was sent to a Ray log holding only Ray's start-up warnings."""
    from l2l.runs import ray_cluster
    from l2l.runs.cli.common import say_ray_log
    from l2l.runs.executors import ExecutorError
    from l2l.runs.search_config import SearchError

    monkeypatch.setattr(ray_cluster, "ray_log", lambda: "/tmp/ray-1.log")
    say_ray_log(SearchError("run 5 was resumed by another process (vm:8652) meanwhile"))
    assert capsys.readouterr().err == ""
    say_ray_log(ExecutorError("Ray cannot start workers for the children"))
    assert "Ray's own messages are in /tmp/ray-1.log" in capsys.readouterr().err


def test_the_weight_sharing_option_help_names_every_setting() -> None:
    """`-W`'s help left out schedule and score, which the docs and the unknown-key error name."""
    import dataclasses

    from l2l.runs.sharing_config import SharingConfig

    text = " ".join(runner.invoke(app, ["search", "--help"], env={"COLUMNS": "300"}).output.split())
    said = text.split("Weight-sharing setting KEY=VALUE:")[1].split("(see docs/weight-sharing.md)")[0]
    assert {f.name for f in dataclasses.fields(SharingConfig)} == {w.strip(" ,│") for w in said.split(",")} - {""}
