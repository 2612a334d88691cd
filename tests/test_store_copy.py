"""`l2l db`: a store's schema said without changing it, upgraded when asked, and its runs copied whole into
another store (SQLite to SQLite and to PostgreSQL), once."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from l2l.runs.cli import app
from l2l.runs.models import CheckpointRow, ChildRow, EpochRow, RunRow, SpaceDataRow, UpdateRow
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.runs.store_engine import schema_head
from tests.conftest import SharingRun

runner = CliRunner()


def l2l(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "300"})


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def rows_of(store: Store, run_id: int) -> dict[str, Any]:
    """Every row a run has, in every table, without the ids the store gave them."""
    out: dict[str, Any] = {}
    with store.session_scope() as s:
        run = s.get(RunRow, run_id)
        out["runs"] = {c.name: _utc(getattr(run, c.key)) for c in RunRow.__table__.columns if c.name != "id"}
        for table in (ChildRow, UpdateRow, CheckpointRow, EpochRow, SpaceDataRow):
            found = s.scalars(select(table).where(table.run_id == run_id)).all()
            drop = ("id", "run_id")
            out[table.__tablename__] = sorted(
                (tuple((c.name, _utc(getattr(r, c.key))) for c in table.__table__.columns if c.name not in drop))
                for r in found
            )
    return out


@pytest.fixture()
def source(tmp_path: Path, sharing_run: SharingRun) -> tuple[str, list[int]]:
    """A SQLite store with a search (children, updates, checkpoint, space data) and a weight-sharing run."""
    url = f"sqlite:///{tmp_path / 'laptop.db'}"
    store = Store(url)
    searched = Search.start(store, SearchConfig(space="toy", children=6, batch=2, seed=3, executor="local")).run()
    shared = sharing_run(store, [[0.1, 0.2], [0.3]], 2)
    store.set_run_status(shared, "done")
    return url, [searched, shared]


def test_runs_are_copied_whole_under_new_ids_and_a_second_copy_adds_nothing(
    source: tuple[str, list[int]], store: Store
) -> None:
    url, runs = source
    target, target_url = store, store.url  # an empty store on SQLite, and on PostgreSQL
    Search.start(target, SearchConfig(space="toy", children=2, seed=9, executor="local")).run()  # its own run 1
    out = l2l("db", "copy", "--to", target_url, "--storage", url)
    assert out.exit_code == 0, out.output
    copies = [int(n) for n in re.findall(r"-> run (\d+):", out.output)]  # ids the target gives (a sequence's)
    assert len(copies) == 2 and min(copies) > 1, out.output
    assert f"run {runs[0]} -> run {copies[0]}: 6 children, 3 controller updates, 1 checkpoint, space data" in out.output
    assert f"run {runs[1]} -> run {copies[1]}: 3 children, 1 checkpoint, 2 epochs" in out.output
    for old, new in zip(runs, copies, strict=True):
        assert rows_of(target, new) == rows_of(Store(url), old)  # every column of every row, timestamps included
    # what commands show of the copy is what they show of the original
    shown = [l2l("runs", "best", str(r), "--storage", u).output for r, u in ((runs[0], url), (copies[0], target_url))]
    assert shown[0].replace(f"run {runs[0]}", "run X") == shown[1].replace(f"run {copies[0]}", "run X")
    again = l2l("db", "copy", "--to", target_url, "--storage", url)
    assert again.exit_code == 0 and "copied 0 run(s)" in again.output
    said = " ".join(again.output.split())
    assert f"run {runs[0]}: not copied, the target holds it already, as run {copies[0]}" in said
    assert len(target.list_runs()) == 3


def test_a_run_still_running_is_left_out_and_wrong_input_is_one_line(
    source: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, runs = source
    from l2l.runs.driver import this_driver

    store = Store(url)
    live = store.create_run(
        space="toy", strategy="random", config={}, seed=0, n_children=4, code_version="t", driver=this_driver()
    )  # its driver is this process: alive
    target = f"sqlite:///{tmp_path / 'team.db'}"
    out = l2l("db", "copy", str(live), str(runs[0]), "--to", target, "--storage", url)
    assert out.exit_code == 1, out.output  # a run asked for and left out (it exited 0: a script could not tell)
    said = " ".join(out.output.split())
    assert f"run {live}: not copied, it is running: copy it when it stops" in said and "copied 1 run(s)" in said
    for args, message in [
        (["db", "copy", "--storage", url], "l2l db copy needs --to URL"),
        (["db", "copy", "99", "--to", target, "--storage", url], "no run 99 in store"),
        (["db", "copy", "--to", url, "--storage", url], "cannot copy store sqlite:///"),
    ]:
        refused = l2l(*args)
        assert refused.exit_code == 1 and message in refused.output and "Traceback" not in refused.output, args


def test_db_status_says_an_older_schema_without_upgrading_it_and_db_upgrade_does(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Search.start(Store(f"sqlite:///{path}"), SearchConfig(space="toy", children=2, executor="local")).run()
    conn = sqlite3.connect(path)  # as l2l of revision 0007 left it
    conn.execute("UPDATE alembic_version SET version_num = '0007'")
    conn.execute("ALTER TABLE space_data DROP COLUMN decisions")
    conn.execute("DROP TABLE store_marks")
    conn.commit()
    conn.close()
    url = f"sqlite:///{path}"
    for _ in range(2):  # saying it changes nothing
        out = l2l("db", "status", "--storage", url)
        assert out.exit_code == 0, out.output
        said = " ".join(out.output.split())
        assert f"schema: revision 0007, older than this l2l's {schema_head()}: `l2l db upgrade` upgrades it" in said
        assert "runs: 1 (1 done)" in said
    out = l2l("db", "upgrade", "--storage", url)
    assert out.exit_code == 0 and f"upgraded store {url} from schema revision 0007 to {schema_head()}" in out.output
    assert f"schema: revision {schema_head()}, this l2l's" in l2l("db", "status", "--storage", url).output
    assert "nothing to do" in l2l("db", "upgrade", "--storage", url).output
    missing = l2l("db", "status", "--storage", f"sqlite:///{tmp_path / 'nope.db'}")
    assert missing.exit_code == 1 and "does not exist (a search creates it)" in missing.output


def test_every_run_is_copied_however_many_and_a_run_changed_since_its_copy_is_named_not_duplicated(
    tmp_path: Path,
) -> None:
    """`list_runs`' page of 50 was all a copy saw: older runs were left behind (and refused by id)."""
    url, target_url = f"sqlite:///{tmp_path / 'many.db'}", f"sqlite:///{tmp_path / 'team.db'}"
    store = Store(url)
    for seed in range(55):
        store.set_run_status(store.create_run(space="toy", strategy="random", config={}, seed=seed, n_children=1,
                                              code_version="t"), "done")  # fmt: skip
    assert "copied 55 run(s)" in l2l("db", "copy", "--to", target_url, "--storage", url).output
    assert "copied 0 run(s)" in l2l("db", "copy", "1", "--to", target_url, "--storage", url).output  # there already
    # the original goes on after its copy (a resume, a move): named, neither replaced nor copied twice
    store.set_run_config(1, {"moves": [{"to": {"address": "embedded"}}]})
    out = l2l("db", "copy", "1", "--to", target_url, "--storage", url)
    said = " ".join(out.output.split())
    assert out.exit_code == 0 and "run 1: not copied, the target's run 1 is an earlier copy of it, and one of" in said
    assert "delete run 1 there first" in said and len(Store(target_url).list_runs(100)) == 55
    # a wrong run is refused before the target is made
    out = l2l("db", "copy", "56", "--to", f"sqlite:///{tmp_path / 'new.db'}", "--storage", url)
    assert out.exit_code == 1 and "no run 56 in store" in out.output and not (tmp_path / "new.db").exists()


def test_copying_from_an_older_store_leaves_its_schema_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Search.start(Store(f"sqlite:///{path}"), SearchConfig(space="toy", children=2, executor="local")).run()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '0007'")
    conn.execute("ALTER TABLE space_data DROP COLUMN decisions")
    conn.execute("DROP TABLE store_marks")
    conn.commit()
    conn.close()
    out = l2l("db", "copy", "--to", f"sqlite:///{tmp_path / 'new.db'}", "--storage", f"sqlite:///{path}")
    assert out.exit_code == 0 and "run 1 -> run 1: 2 children" in out.output and "upgraded" not in out.output
    assert sqlite3.connect(path).execute("SELECT version_num FROM alembic_version").fetchone() == ("0007",)
    assert Store(f"sqlite:///{tmp_path / 'new.db'}").count_children(1)["done"] == 2


def test_db_status_counts_a_run_whose_driver_is_gone_as_stale(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = Store(url)
    from sqlalchemy import update

    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="t")
    with store.session_scope() as s:  # another machine's driver, silent for ten minutes
        s.execute(
            update(RunRow).where(RunRow.id == run).values(driver="elsewhere:1", heartbeat_at=datetime(2026, 1, 1))
        )
    live = store.create_run(space="toy", strategy="random", config={}, seed=1, n_children=1, code_version="t")
    assert "runs: 2 (1 running, 1 stale)" in l2l("db", "status", "--storage", url).output, live
