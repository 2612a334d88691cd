"""The results store on SQLite and on PostgreSQL: records, transactions, migrations and errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from l2l.runs.models import Base
from l2l.runs.store import NewChild, RunNotFound, Store, StoreError
from l2l.search_spaces import Result


def make_run(store: Store, n: int = 4) -> int:
    return store.create_run(
        space="toy", strategy="reinforce", config={"children": n}, seed=3, n_children=n, code_version="test", name="t"
    )


def new_child(number: int, batch: int = 0) -> NewChild:
    return NewChild(number, batch, (1, 0, number), {"space": "toy", "values": []}, -1.5, 2.0, 0)


def test_schema_matches_the_models(store: Store) -> None:
    assert {"runs", "children", "controller_updates", "checkpoints", "alembic_version"} <= set(store.table_names())
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrating_twice_is_harmless(store: Store) -> None:
    run = make_run(store)
    store.migrate()
    assert store.get_run(run).name == "t"


def test_run_lifecycle(store: Store) -> None:
    run = make_run(store)
    rec = store.get_run(run)
    assert (rec.space, rec.strategy, rec.seed, rec.status, rec.config) == (
        "toy",
        "reinforce",
        3,
        "running",
        {"children": 4},
    )
    store.set_run_status(run, "interrupted", "stopped")
    assert store.get_run(run).status == "interrupted"
    store.set_run_status(run, "done")
    done = store.get_run(run)
    assert done.status == "done" and done.finished_at is not None and done.error is None
    assert [r.id for r in store.list_runs()] == [run]
    with pytest.raises(StoreError, match="unknown run status 'paused'"):
        store.set_run_status(run, "paused")
    store.set_run_status(run, "running")  # resumed: no longer finished
    assert store.get_run(run).finished_at is None


@pytest.mark.postgres
def test_a_connection_the_server_cut_is_replaced_not_the_end_of_the_search(postgres_url: str) -> None:
    """A server restart, failover or pg_terminate_backend between two writes ended a search on its next write."""
    import sqlalchemy

    store = Store(postgres_url)
    run = make_run(store)
    with store.engine.connect() as conn:  # the pooled connection the next write will take
        pid = conn.scalar(sqlalchemy.text("SELECT pg_backend_pid()"))
    admin = sqlalchemy.create_engine(postgres_url)
    with admin.begin() as conn:
        assert conn.scalar(sqlalchemy.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    store.set_run_status(run, "done")
    assert store.get_run(run).status == "done"
    store.close()


@pytest.mark.postgres
def test_two_searches_creating_one_new_postgresql_store_both_start(postgres_url: str) -> None:
    """Both ran the migration: one failed with "duplicate key value violates unique constraint pg_type_..."."""
    import os
    import subprocess
    import sys

    import sqlalchemy
    from sqlalchemy.engine import make_url

    name = f"l2l_race_{os.getpid()}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = make_url(postgres_url).set(database=name, query={}).render_as_string(hide_password=False)
    try:
        code = "import sys; from l2l.runs.store import Store; Store(sys.argv[1]).close(); print('opened')"
        both = [subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for _ in range(2)]  # fmt: skip
        outs = [p.communicate(timeout=120)[0] for p in both]
        assert [p.returncode for p in both] == [0, 0] and all("opened" in o for o in outs), outs
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def test_children_results_and_top(store: Store) -> None:
    run = make_run(store)
    store.add_children(run, [new_child(i) for i in range(4)])
    assert store.count_children(run) == {"queued": 4, "running": 0, "done": 0, "failed": 0}
    store.mark_running(run, [0, 1, 2, 3], worker="w")
    for i, reward in [(0, 0.5), (1, 0.9), (2, 0.7)]:
        result = Result(
            reward=reward,
            val_acc=reward,
            val_loss=1 - reward,
            test={"test_acc": reward - 0.1},
            cost={"params": 100.0 * i},
            curves={"val_acc": [0.1, reward]},
            info={"worker": "host:1", "device": "cpu", "wall_time": 0.25, "started": 1.7e9, "finished": 1.7e9 + 0.25},
        )
        store.finish_child(run, i, result.to_json(), reward)
    store.finish_child(run, 3, Result.failed("RuntimeError: boom").to_json(), 0.5)
    counts = store.count_children(run)
    assert counts == {"queued": 0, "running": 0, "done": 3, "failed": 1}
    top = store.top_children(run, 2)
    assert [c.number for c in top] == [1, 2]
    best = top[0]
    assert best.tokens == (1, 0, 1) and best.curves == {"val_acc": [0.1, 0.9]}
    assert best.metrics["test"] == {"test_acc": pytest.approx(0.8)} and best.metrics["cost"] == {"params": 100.0}
    assert (best.worker, best.device, best.wall_time, best.attempts) == ("host:1", "cpu", 0.25, 1)
    assert best.node is None  # in-process: no Ray node
    assert best.started_at is not None and best.finished_at is not None
    failed = store.children(run, status="failed")[0]
    assert failed.reward is None and failed.controller_reward == 0.5 and failed.error == "RuntimeError: boom"
    with pytest.raises(StoreError, match="unknown child status 'fialed'; known: queued, running, done, failed"):
        store.children(run, status="fialed")  # not an empty list, as if none had failed
    with pytest.raises(StoreError, match="has no child 9"):
        store.finish_child(run, 9, Result(reward=1.0).to_json(), 1.0)


def test_retries_after_worker_deaths_count_as_attempts_and_the_node_is_a_column(store: Store) -> None:
    run = make_run(store)
    store.add_children(run, [new_child(0), new_child(1)], running=True)
    retried = dataclasses.replace(Result(reward=0.5), runtime={"node": "ab12cd", "retries": 2, "worker": "h:9"})
    store.finish_children(run, [(0, retried.to_json(), 0.5), (1, Result(reward=0.1).to_json(), 0.1)])
    first, second = store.children(run)
    assert (first.attempts, first.node, first.worker) == (3, "ab12cd", "h:9")  # the first run and two retries
    assert (second.attempts, second.node) == (1, None)


def test_children_finished_together_are_recorded_all_or_none(store: Store) -> None:
    run = make_run(store)
    store.add_children(run, [new_child(i) for i in range(3)], running=True)
    ok = Result(reward=0.5).to_json()
    with pytest.raises(StoreError, match="has no child 7"):
        store.finish_children(run, [(0, ok, 0.5), (7, ok, 0.5)])
    assert store.count_children(run)["done"] == 0  # child 0 was not recorded without child 7
    store.finish_children(run, [(0, ok, 0.5), (2, Result.failed("boom").to_json(), 0.1)])
    assert [(c.number, c.status, c.controller_reward) for c in store.children(run)] == [
        (0, "done", 0.5),
        (1, "running", None),
        (2, "failed", 0.1),
    ]


def test_duplicate_child_is_refused_and_nothing_is_half_written(store: Store) -> None:
    run = make_run(store)
    store.add_children(run, [new_child(0)])
    with pytest.raises(StoreError, match="add children failed"):
        store.add_children(run, [new_child(1), new_child(0)])
    assert [c.number for c in store.children(run)] == [0]


def test_requeue_unfinished(store: Store) -> None:
    run = make_run(store)
    store.add_children(run, [new_child(i) for i in range(3)])
    store.mark_running(run, [0, 1])
    store.finish_child(run, 0, Result(reward=1.0).to_json(), 1.0)
    assert store.requeue_unfinished(run, "driver died") == 1
    assert [(c.number, c.status) for c in store.children(run)] == [(0, "done"), (1, "queued"), (2, "queued")]
    assert store.children(run)[1].error == "driver died"


def test_updates_and_checkpoints(store: Store) -> None:
    run = make_run(store)
    assert store.latest_checkpoint(run) is None
    for batch in range(3):
        stats = {
            "loss": 0.1 * batch,
            "baseline": 0.5,
            "mean_reward": 0.6,
            "entropy": 3.0,
            "policy_version": batch + 1,
            "n": 2,
            "extra": {"grad_norm": 1.0},
        }
        store.record_update(run, batch, stats, bytes([batch]) * 1000, next_child=2 * (batch + 1))
    ckpt = store.latest_checkpoint(run)
    assert ckpt is not None and (ckpt.batch, ckpt.next_child, ckpt.state) == (2, 6, bytes([2]) * 1000)
    ups = store.updates(run)
    assert [u.policy_version for u in ups] == [1, 2, 3] and ups[0].extra == {"grad_norm": 1.0}
    with pytest.raises(StoreError, match="record update of batch 2 failed"):
        store.record_update(run, 2, {**stats, "policy_version": 3}, b"x", next_child=99)
    assert store.latest_checkpoint(run).next_child == 6  # type: ignore[union-attr]


def test_missing_run_names_the_known_ones(store: Store) -> None:
    run = make_run(store)
    with pytest.raises(RunNotFound, match=f"no run 999 in store .*; latest runs: {run}"):
        store.get_run(999)


def test_delete_run(store: Store) -> None:
    run = make_run(store)
    store.add_children(run, [new_child(0)])
    store.delete_run(run)
    with pytest.raises(RunNotFound):
        store.get_run(run)
    assert store.children(run) == []


def test_a_deleted_runs_id_is_never_handed_out_again(store: Store) -> None:
    """SQLite gave the newest run deleted's id to the next new run: `--resume 13`, a watcher or a dashboard link
    then named another run."""
    first, newest = make_run(store), make_run(store)
    store.delete_run(newest)
    again = make_run(store)
    assert again > newest
    store.delete_run(again)
    store.delete_run(first)  # an older id deleted later keeps the mark at the largest
    assert make_run(store) > again


def test_what_a_space_measured_is_kept_with_its_run(store: Store) -> None:
    measured = {"placement_graph": {"model": "m", "ops": [["x", "placeholder", "", [], 8, 0, [], 0.25]]}}
    run = store.create_run(
        space="placement", strategy="random", config={}, seed=0, n_children=2, code_version="t", space_data=measured
    )
    plain = make_run(store)
    assert store.space_data(run) == measured and store.space_data(plain) == {}
    store.delete_run(run)
    assert store.space_data(run) == {}


def test_bad_urls_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="invalid storage URL 'not a url'"):
        Store("not a url")
    with pytest.raises(StoreError, match=r"directory .*nowhere.* does not exist"):
        Store(f"sqlite:///{tmp_path / 'nowhere' / 'x.db'}")
    with pytest.raises(StoreError, match="cannot open store nosuchdb://"):
        Store("nosuchdb://x")
    with pytest.raises(StoreError, match=r"cannot connect to store postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x"):
        Store("postgresql+psycopg://u:secret@127.0.0.1:1/x")


def test_database_gone_after_open(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    store = Store(f"sqlite:///{path}")
    run = make_run(store)
    store.close()
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(StoreError, match="read run failed: no such table: runs"):
        store.get_run(run)


def test_the_split_store_keeps_its_public_names() -> None:
    import l2l.runs.store as store_module
    from l2l.runs.store_engine import Database
    from l2l.runs.store_records import ChildRecord

    assert all(hasattr(store_module, name) for name in store_module.__all__)
    assert store_module.ChildRecord is ChildRecord and issubclass(Store, Database)
    assert "secret" not in store_module.safe_url("postgresql+psycopg://me:secret@db.example/l2l")


def test_processes_creating_one_new_sqlite_store_at_once_all_open_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'new.db'}"
    start = __import__("time").time() + 4.0
    code = "import time, alembic.command, alembic.config; from l2l.runs.store import Store; "
    code += f"time.sleep(max(0.0, {start} - time.time())); Store({url!r}).close()"  # all migrate at once
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    assert Store(url).list_runs() == []


@pytest.fixture
def read_only_copy(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """Puts a closed SQLite store where this process cannot write: a read-only folder (a read-only bind mount
    when running as root, whom permissions do not stop); returns the store's path there."""
    import os
    import shutil
    import subprocess

    made: list[Path] = []

    def put(store_file: Path) -> Path:
        folder = tmp_path / "archive"
        folder.mkdir()
        shutil.copy(store_file, folder / "l2l.db")
        if Path(f"{store_file}-wal").exists():  # copied with its write-ahead log, as the docs say to
            shutil.copy(f"{store_file}-wal", folder / "l2l.db-wal")
        if os.geteuid() != 0:
            (folder / "l2l.db").chmod(0o444)
            folder.chmod(0o555)
            made.append(folder)
            return folder / "l2l.db"
        mount = tmp_path / "mounted"
        mount.mkdir()
        for args in (["--bind", str(folder), str(mount)], ["-o", "remount,bind,ro", str(mount)]):
            if subprocess.run(["mount", *args], capture_output=True).returncode != 0:
                pytest.skip("running as root without the right to mount a read-only folder")
        made.append(mount)
        return mount / "l2l.db"

    yield put
    for folder in made:
        if folder.name == "mounted":
            subprocess.run(["umount", "--lazy", str(folder)], capture_output=True)  # a pool may hold it open
        else:
            folder.chmod(0o755)


def test_a_store_in_a_read_only_folder_is_read_and_a_write_says_why_not(
    tmp_path: Path, read_only_copy: Callable[[Path], Path]
) -> None:
    from l2l.runs.dashboard.engine import read_only_engine

    store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
    run = make_run(store)
    store.set_run_status(run, "done")
    store.close()
    path = read_only_copy(tmp_path / "l2l.db")
    assert not Path(f"{path}-shm").exists()  # no write-ahead log files beside it, and none can be made

    archived = Store(f"sqlite:///{path}")  # it was "unable to open database file" (WAL needs its -shm file)
    assert [r.id for r in archived.list_runs()] == [run] and archived.get_run(run).status == "done"
    with pytest.raises(StoreError, match=r"delete run failed: attempt to write a readonly database \(its f"):
        archived.delete_run(run)
    archived.close()
    engine = read_only_engine(f"sqlite:///{path}")  # the dashboard's engine reads it too
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
    engine.dispose()


def test_a_read_only_store_of_an_older_schema_is_refused_with_the_revisions_named(
    tmp_path: Path, read_only_copy: Callable[[Path], Path]
) -> None:
    import sqlite3

    Store(f"sqlite:///{tmp_path / 'l2l.db'}").close()
    conn = sqlite3.connect(tmp_path / "l2l.db")  # as an older l2l left it: one migration fewer
    conn.execute("UPDATE alembic_version SET version_num = '0006'")
    conn.commit()
    conn.close()  # the last connection: the write-ahead log goes into the file that is copied
    path = read_only_copy(tmp_path / "l2l.db")
    with pytest.raises(StoreError, match=r"its schema \(0006\) is not this l2l's \(\d{4}\); copy it to a folder"):
        Store(f"sqlite:///{path}")


def test_a_store_a_newer_l2l_wrote_is_one_line_and_an_upgrade_says_so(tmp_path: Path) -> None:
    import sqlite3

    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.runs.dashboard.server import schema_behind
    from l2l.runs.store_engine import schema_head

    path = tmp_path / "l2l.db"
    make_run(Store(f"sqlite:///{path}"))
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '0099'")  # as a newer l2l leaves it
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"a newer l2l wrote it \(its schema is at revision 0099, which this l2l, at"):
        Store(f"sqlite:///{path}")  # was Alembic's traceback: "Can't locate revision identified by '0099'"
    warning = schema_behind("0099")
    assert warning is not None and "a newer l2l wrote this store" in warning and "runs list" not in warning
    other = sqlite3.connect(tmp_path / "other.db")  # another program's Alembic schema: not "a newer l2l"
    other.executescript("CREATE TABLE alembic_version (version_num TEXT); INSERT INTO alembic_version VALUES ('ab12');")
    other.close()
    with pytest.raises(StoreError, match=r"no l2l store at .*: the database holds another program's schema"):
        Store(f"sqlite:///{tmp_path / 'other.db'}")

    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = '0007'")  # an older one: the decisions column goes
    conn.execute("ALTER TABLE space_data DROP COLUMN decisions")
    conn.execute("DROP TABLE store_marks")  # migration 0009's
    conn.commit()
    conn.close()
    out = CliRunner().invoke(app, ["runs", "list", "--storage", f"sqlite:///{path}"], env={"COLUMNS": "300"})
    assert out.exit_code == 0 and f"upgraded store sqlite:///{path} from schema revision 0007 to {schema_head()}" in (
        out.output
    )
    again = CliRunner().invoke(app, ["runs", "list", "--storage", f"sqlite:///{path}"], env={"COLUMNS": "300"})
    assert again.exit_code == 0 and "upgraded" not in again.output


def test_a_read_only_copy_whose_write_ahead_log_holds_writes_is_refused_not_read_without_them(
    tmp_path: Path, read_only_copy: Callable[[Path], Path]
) -> None:
    """Opened immutable, SQLite reads the main file only: runs in the log were silently missing."""
    store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
    make_run(store)  # the store stays open: its last writes are in l2l.db-wal
    assert Path(f"{tmp_path / 'l2l.db'}-wal").stat().st_size > 0
    path = read_only_copy(tmp_path / "l2l.db")
    store.close()
    with pytest.raises(
        StoreError, match=r"its write-ahead log l2l\.db-wal holds writes that cannot be read in a folder"
    ):
        Store(f"sqlite:///{path}")


@pytest.mark.postgres
def test_a_role_that_may_only_read_an_older_schema_is_told_who_upgrades_it(postgres_url: str) -> None:
    """It said only "cannot migrate store ...: permission denied for schema ..."."""
    import uuid

    import sqlalchemy

    from l2l.runs.store_engine import schema_head
    from tests.conftest import POSTGRES_URL

    if "://postgres@" not in POSTGRES_URL:
        pytest.skip("the test server's URL names another user: the reader's URL is made from it")
    tag = uuid.uuid4().hex[:8]
    schema, role = f"l2l_old_{tag}", f"l2l_reader_{tag}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    try:
        Store(url).engine.dispose()
        with admin.begin() as conn:  # as l2l left it before migration 0009
            conn.execute(sqlalchemy.text(f'DROP TABLE "{schema}".store_marks'))
            conn.execute(sqlalchemy.text(f"UPDATE \"{schema}\".alembic_version SET version_num = '0008'"))
            conn.execute(sqlalchemy.text(f'CREATE ROLE "{role}" LOGIN'))
            conn.execute(sqlalchemy.text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
            conn.execute(sqlalchemy.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"'))
        reader = url.replace("://postgres@", f"://{role}@", 1)
        with pytest.raises(StoreError) as refused:
            Store(reader, create=False)
        said = str(refused.value)
        assert "permission denied" in said and f"its schema (0008) is older than this l2l's ({schema_head()})" in said
        assert "its owner upgrades it with `l2l db upgrade --storage" in said
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_retraining_a_weight_sharing_run_of_a_read_only_store_is_refused_before_it_trains(
    tmp_path: Path, read_only_copy: Callable[[Path], Path]
) -> None:
    """It trained the derived architecture for minutes, printed its figures, then failed to record them."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.runs.search import SearchConfig
    from l2l.runs.weight_sharing import WeightSharingSearch

    store = Store(f"sqlite:///{tmp_path / 'l2l.db'}")
    settings = {"epochs": 2, "steps": 2, "batch_size": 16, "controller_steps": 1, "val_batch": 16, "derive": 2}
    config = SearchConfig(space="nb201_cell", space_options={"channels": 4}, strategy="random", weight_sharing=settings)
    run = WeightSharingSearch.start(store, config).run()
    store.close()
    path = read_only_copy(tmp_path / "l2l.db")
    out = CliRunner().invoke(app, ["runs", "best", str(run), "--retrain", "--storage", f"sqlite:///{path}"])
    said = " ".join(out.output.split())
    assert out.exit_code == 1, said
    assert f"cannot record a retraining in run {run}: store sqlite:///{path} is read-only" in said
    assert "retrained" not in said  # refused before any training
