"""Shared fixtures: stores on SQLite and on the local PostgreSQL server, and test plugins."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from l2l.runs.store import Store

PLUGINS = Path(__file__).parent / "plugins"
POSTGRES_URL = os.environ.get("L2L_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_configure(config: pytest.Config) -> None:
    """The CLI's logs (Ray's messages per run, `L2L_LOG_DIR`) go to a folder of this session, removed at its
    end: the suite left hundreds of folders in the user's ~/.cache/l2l/logs."""
    import tempfile

    os.environ["L2L_LOG_DIR"] = tempfile.mkdtemp(prefix="l2l-test-logs-")


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    logs = os.environ.pop("L2L_LOG_DIR", "")
    if "l2l-test-logs-" in logs:
        shutil.rmtree(logs, ignore_errors=True)


def _postgres_reachable() -> str | None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any driver or network error means: no server here
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL server; skipped when none answers unless L2L_REQUIRE_POSTGRES=1."""
    import sqlalchemy

    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("L2L_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required (L2L_REQUIRE_POSTGRES=1) but unreachable: {problem}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {problem}")
    schema = f"l2l_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated store on each backend; PostgreSQL tables are emptied between tests."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        s = Store(request.getfixturevalue("postgres_url"))
        import sqlalchemy

        from l2l.runs.models import Base

        with s.engine.begin() as conn:  # every table of the store's models, whatever references what
            conn.execute(sqlalchemy.text(f"TRUNCATE {', '.join(Base.metadata.tables)} RESTART IDENTITY"))
    try:
        yield s
    finally:
        s.close()


SharingRun = Callable[[Store, list[list[float]], int], int]


@pytest.fixture()
def sharing_run() -> SharingRun:
    """Records a weight-sharing run of `toy` by hand: ``scores[e]`` are the rewards of the architectures its
    controller scored in epoch e (numbered on from 0), for a search set to ``epochs`` epochs. Returns its id."""
    from l2l.runs.store import EpochRecord, ScoredChild

    def record(store: Store, scores: list[list[float]], epochs: int) -> int:
        run = store.create_run(
            space="toy", strategy="reinforce", config={"weight_sharing": {"epochs": epochs}}, seed=0, n_children=0,
            code_version="t",
        )  # fmt: skip
        spec = {"space": "toy", "values": [["op_0", "op1"]]}
        number = 0
        for epoch, rewards in enumerate(scores):
            scored = [ScoredChild(number + k, epoch, (0,), spec, "shared", r, {}) for k, r in enumerate(rewards)]
            number += len(rewards)
            row = EpochRecord(epoch, 1.0 - epoch / 4, 10, 0.5, 1.2, 3, 2.0, {})
            store.record_epoch(run, row, [], scored, b"", number)
        return run

    return record


@pytest.fixture()
def dataset_missing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Makes a packaged dataset fail to load, by name, as one that needs a package this machine lacks would (its
    loader raises `DatasetError`); the real one loads again after the test."""
    from l2l.nas import data

    def make(name: str) -> None:
        def missing() -> data.Dataset:
            raise data.DatasetError(f"dataset {name!r} needs a package this machine lacks: pip install it")

        monkeypatch.setitem(data._LOADERS, name, missing)
        monkeypatch.delitem(data._INSTALLED, name, raising=False)
        data._load.cache_clear()

    yield make
    data._load.cache_clear()
