"""Which process drives a run: its heartbeat, a stale run told from a live one, resume refused beside a live driver."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from l2l.runs.cli import app
from l2l.runs.driver import Heartbeat, run_state, this_driver
from l2l.runs.executors import LocalExecutor
from l2l.runs.models import RunRow
from l2l.runs.search import Search, SearchConfig, SearchError
from l2l.runs.store import Store


def _run(store: Store) -> int:
    config = SearchConfig(space="toy", strategy="random", children=4, batch=2)
    return store.create_run(
        space="toy", strategy="random", config=config.to_json(), seed=0, n_children=4, code_version="t"
    )


def _driven_by(store: Store, run: int, driver: str, beat: datetime) -> None:
    with store.session_scope() as s:
        s.execute(update(RunRow).where(RunRow.id == run).values(driver=driver, heartbeat_at=beat))


def test_a_run_whose_driver_is_gone_is_stale_with_how_to_resume_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    run = _run(store)
    now = datetime.now(UTC)
    with Heartbeat(store, run, every=0.05):  # this process drives it
        assert run_state(store.get_run(run)) == "running"
    _driven_by(store, run, "elsewhere:123", now - timedelta(seconds=10))  # another machine, heard from lately
    assert run_state(store.get_run(run), now) == "running"
    with pytest.raises(SearchError, match=f"run {run} is still running: its driver elsewhere:123 said it was alive"):
        Search.resume(store, run)
    _driven_by(store, run, "elsewhere:123", now - timedelta(seconds=312))
    assert run_state(store.get_run(run), now) == (
        f"stale (no heartbeat for 312 s; resume with: l2l search --resume {run})"
    )
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = this_driver().rpartition(":")[0]
    _driven_by(store, run, f"{host}:{dead.stdout.strip()}", now - timedelta(seconds=2))  # killed on this machine
    assert run_state(store.get_run(run), now).startswith("stale (no heartbeat for 2 s;")
    result = CliRunner().invoke(app, ["runs", "list", "--storage", store.url], env={"COLUMNS": "80"})
    row = next(line for line in result.output.splitlines() if line.startswith(f"│ {run} "))
    assert "│ stale " in row and "heartbeat" not in row  # the table stays narrow: the how-to is said below it
    assert f"run {run} is stale (no heartbeat for" in result.output and f"--resume {run}" in result.output
    shown = CliRunner().invoke(app, ["runs", "show", str(run), "--storage", store.url], env={"COLUMNS": "400"})
    assert f"resume with: l2l search --resume {run} --storage {store.label})" in " ".join(shown.output.split())
    assert f"driven by {host}:{dead.stdout.strip()}" in shown.output  # on a shared store: where it ran
    store.set_run_status(run, "interrupted", "interrupted by the user")
    assert run_state(store.get_run(run), now) == "interrupted"
    shown = CliRunner().invoke(app, ["runs", "show", str(run), "--storage", store.url])
    assert "status: interrupted" in shown.output


def test_a_driver_killed_before_its_first_heartbeat_leaves_a_stale_run(tmp_path: Path) -> None:
    """A search killed while its executor started (Ray's start takes seconds) left a run with no driver, which
    `runs list` and the dashboard showed as running for ever."""
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    code = (
        "import os, sys\n"
        "from l2l.runs.search import Search, SearchConfig\n"
        "from l2l.runs.executors import LocalExecutor\n"
        "from l2l.runs.store import Store\n"
        "config = SearchConfig(space='toy', strategy='random', children=4, batch=2)\n"
        "Search.start(Store(sys.argv[1]), config, executor=LocalExecutor())\n"
        "os._exit(9)  # killed before Search.run claims the run\n"
    )
    subprocess.run([sys.executable, "-c", code, store.url], check=False)
    (run,) = store.list_runs()
    assert run.status == "running" and run_state(run).startswith("stale (no heartbeat for")


def test_resume_may_move_a_run_and_records_each_move(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    config = SearchConfig(
        space="toy", strategy="random", children=4, batch=2, executor="ray", executor_options={"max_concurrent": 2}
    )
    run = Search.start(store, config, executor=LocalExecutor()).run_id
    store.set_run_status(run, "interrupted")
    moves = {"address": "10.0.0.7:6379", "max_concurrent": 8, "child_timeout": 60.0, "cpus_per_child": 0.5}
    search = Search.resume(store, run, executor=LocalExecutor(), moves=moves)
    assert search.moved is not None and search.moved["to"] == moves
    assert search.moved["from"] == {"address": None, "max_concurrent": 2, "child_timeout": None, "cpus_per_child": None}
    stored = SearchConfig.from_json(store.get_run(run).config, recorded=True)
    assert dict(stored.executor_options) == moves  # a later resume without flags keeps running there
    assert len(stored.moves) == 1 and stored.moves[0]["to"] == moves
    store.set_run_status(run, "interrupted")
    again = Search.resume(store, run, executor=LocalExecutor(), moves={"address": "10.0.0.7:6379"})
    assert again.moved is None and len(SearchConfig.from_json(store.get_run(run).config, recorded=True).moves) == 1
    refused = CliRunner().invoke(
        app, ["search", "--resume", str(run), "--gpus-per-child", "1", "--storage", store.url], env={"COLUMNS": "300"}
    )
    may = "--address, --max-concurrent, --child-timeout, --cpus-per-child"  # the CPUs Ray reserves: not the run
    assert refused.exit_code == 1 and f"drop --gpus-per-child (where it runs may change: {may})" in refused.output


def test_of_two_resumes_started_at_once_one_goes_on_and_the_other_is_told(tmp_path: Path) -> None:
    """Both passed the live-driver check before either claimed the run; both drove it, and the loser's failure
    marked it failed while the winner ran."""
    from l2l.runs.driver import resumable, take_over

    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    run = _run(store)
    _driven_by(store, run, "elsewhere:123", datetime.now(UTC) - timedelta(seconds=600))  # killed long ago
    store.set_run_status(run, "interrupted")
    first, second = resumable(store, run, SearchError), resumable(store, run, SearchError)  # both read it free
    take_over(store, first, SearchError)
    claimed = store.get_run(run)
    assert (claimed.driver, claimed.status) == (this_driver(), "running")
    with pytest.raises(SearchError, match=f"run {run} was resumed by another process \\({this_driver()}\\) meanwhile"):
        take_over(store, second, SearchError)
    # one that reads the run after the other claimed it (from another machine, lately heard from) is refused
    assert store.take_over_run(run, "hostA:1", (this_driver(), "running"))
    with pytest.raises(SearchError, match=f"run {run} is still running: its driver hostA:1 said it was alive"):
        resumable(store, run, SearchError)
    store.set_run_status(run, "interrupted")
    Search.resume(store, run, executor=LocalExecutor())  # a run stopped since is taken over again
    assert store.get_run(run).status == "running" and store.get_run(run).driver == this_driver()


def test_a_running_run_recorded_before_drivers_were_is_stale_once_silent(tmp_path: Path) -> None:
    """Runs of an l2l from before migration 0003 have no driver: one killed then read as running for ever."""
    store = Store(f"sqlite:///{tmp_path / 'o.db'}")
    run = _run(store)  # no driver, as such runs were recorded
    record = store.get_run(run)
    since = record.updated_at if record.updated_at.tzinfo else record.updated_at.replace(tzinfo=UTC)
    assert run_state(record, since + timedelta(seconds=5)) == "running"  # it may still be driven: just written
    assert run_state(record, since + timedelta(seconds=3600)) == (
        f"stale (no driver recorded, silent for 3600 s; resume with: l2l search --resume {run})"
    )
