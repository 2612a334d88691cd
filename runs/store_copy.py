"""Copying runs from one store to another (`l2l db copy`): a laptop's SQLite file onto a team's PostgreSQL.

A run is copied whole, in one transaction on the target: the run, its children, controller updates,
checkpoint, weight-sharing epochs and what its space measured, under a new run id (ids are the target's
to give). The source is only read (an older SQLite file through an upgraded snapshot of it). A run still
being recorded (its driver alive) is refused, since the copy would miss what comes next; a run the target
already holds (the same creation time, space, seed and strategy: an earlier copy) is skipped, and said to
have changed where it has, so copying a store again adds only its new runs.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from l2l.runs import models
from l2l.runs.models import CheckpointRow, ChildRow, EpochRow, RunRow, SpaceDataRow, UpdateRow
from l2l.runs.store import Store, StoreError
from l2l.runs.store_engine import schema_head, schema_revisions

ROWS_PER_INSERT = 2000  # children written per statement: a 100,000-child run in 50 of them
PER_RUN = (ChildRow, UpdateRow, CheckpointRow, EpochRow, SpaceDataRow)  # the tables that hold a run's rows
LABELS = {  # how the copy counts each table's rows, by how many
    "children": lambda n: "child" if n == 1 else "children",
    "controller_updates": lambda n: "controller update" if n == 1 else "controller updates",
    "checkpoints": lambda n: "checkpoint" if n == 1 else "checkpoints",
    "shared_epochs": lambda n: "epoch" if n == 1 else "epochs",
    "space_data": lambda n: "space data",
}


@dataclass(frozen=True)
class Copied:
    """What `copy_runs` did with one run of the source: copied as ``target_id``, or skipped (``skipped``: why)."""

    source_id: int
    target_id: int | None
    rows: dict[str, int]  # rows copied, by what they are ("children", "controller updates", ...)
    skipped: str | None = None


RUNNING = "it is running: copy it when it stops (the copy would miss what comes next)"  # a run left out


def copy_runs(source: Store, target: Store, run_ids: Iterable[int] | None = None) -> Iterator[Copied]:
    """Copy ``run_ids`` (default: every run, oldest first) of ``source`` into ``target``, one run at a time.
    `RunNotFound` for an id the source does not hold, before anything is copied."""
    from l2l.runs.driver import run_state

    if source.url == target.url:
        raise StoreError(f"cannot copy store {source.label} onto itself; name another store with --to")
    wanted = all_run_ids(source) if run_ids is None else checked_ids(source, run_ids)
    for run_id in wanted:
        state = run_state(source.get_run(run_id))
        if state == "running":
            yield Copied(run_id, None, {}, RUNNING)
            continue
        yield _copy_one(source, target, run_id)


@contextmanager
def readable(store: Store) -> Iterator[Store]:
    """``store`` (opened without migrating) as a store of this l2l's schema to copy from, leaving it as it is: an
    older SQLite file is read from an upgraded snapshot of it (the copy must not upgrade a teammate's store, one
    way); an older server is refused with what to do."""
    revision, head = store.schema_revision(), schema_head()
    if revision == head:
        yield store
        return
    if revision is None:
        raise StoreError(f"no l2l store at {store.label}: it has no l2l tables")
    if revision not in schema_revisions():
        raise StoreError(
            f"cannot copy from store {store.label}: a newer l2l wrote it (revision {revision}); upgrade l2l"
        )
    path = make_url(store.url).database if store.engine.dialect.name == "sqlite" else None
    if not path:
        raise StoreError(
            f"store {store.label} is at schema revision {revision}, older than this l2l's {head}: upgrade it first "
            f"(`l2l db upgrade`, one way), then copy"
        )
    folder = Path(tempfile.mkdtemp(prefix="l2l-copy-"))
    try:
        source, snapshot = sqlite3.connect(f"file:{Path(path).expanduser()}?mode=ro", uri=True), folder / "source.db"
        with sqlite3.connect(snapshot) as into:
            source.backup(into)
        source.close()
        upgraded = Store(f"sqlite:///{snapshot}")
        try:
            yield upgraded
        finally:
            upgraded.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def all_run_ids(store: Store) -> list[int]:
    """Every run id of ``store``, oldest first."""
    with store.session_scope("list run ids") as s:
        return list(s.scalars(select(RunRow.id).order_by(RunRow.id)).all())


def checked_ids(store: Store, run_ids: Iterable[int]) -> list[int]:
    """``run_ids`` without repeats; `RunNotFound` for the first that ``store`` does not hold."""
    wanted, known = list(dict.fromkeys(run_ids)), set(all_run_ids(store))
    for run_id in wanted:
        if run_id not in known:
            store.get_run(run_id)  # raises, naming the latest runs
    return wanted


def _columns(row: Any, drop: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    """A row's column values by column name, without ``drop``; timestamps as UTC (SQLite returns them naive)."""
    out = {}
    for column in row.__table__.columns:
        if column.name in drop:
            continue
        value = getattr(row, column.key)
        if isinstance(value, datetime):  # stored in UTC; a server may hand them back in its own time zone
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        out[column.name] = value
    return out


def _same_run(run: dict[str, Any]) -> Any:
    """The condition that finds ``run`` in another store: an earlier copy of it (a run's creation time, to the
    microsecond, with its space, seed and strategy; not its settings, which a resume's move changes)."""
    return (
        (RunRow.created_at == run["created_at"])
        & (RunRow.space == run["space"])
        & (RunRow.seed == run["seed"])
        & (RunRow.strategy == run["strategy"])
    )


def _copy_one(source: Store, target: Store, run_id: int) -> Copied:
    with source.session_scope(f"read run {run_id} to copy it") as s:
        run = _columns(s.get(RunRow, run_id))
        rows = {
            table.__tablename__: [
                _columns(r, ("id", "run_id"))
                for r in s.scalars(select(table).where(table.run_id == run_id).order_by(*_order(table)))
            ]
            for table in PER_RUN
        }
    with target.session_scope(f"copy run {run_id}") as t:
        found = t.scalars(select(RunRow).where(_same_run(run)).order_by(RunRow.id)).first()
        if found is not None:
            there = t.scalar(select(func.count()).select_from(ChildRow).where(ChildRow.run_id == found.id)) or 0
            return Copied(run_id, found.id, {}, _earlier_copy(found, run, there, len(rows["children"])))
        row = RunRow(**run)
        if target.engine.dialect.name == "sqlite":  # as `Store.create_run`: past every id present or deleted
            row.id = models.next_run_id()
        t.add(row)
        t.flush()
        new_id = int(row.id)
        for table in PER_RUN:
            values = [{**r, "run_id": new_id} for r in rows[table.__tablename__]]
            for start in range(0, len(values), ROWS_PER_INSERT):
                t.execute(insert(table), values[start : start + ROWS_PER_INSERT])
    return Copied(run_id, new_id, {LABELS[name](len(r)): len(r) for name, r in rows.items() if r})


def _earlier_copy(found: RunRow, run: dict[str, Any], there: int, here: int) -> str:
    """Why a run the target holds a copy of is not copied again: the same state, or what differs (it went on
    here or there since; replacing either would lose what the other recorded)."""
    if _columns(found)["updated_at"] == run["updated_at"]:
        return f"the target holds it already, as run {found.id}"
    return (
        f"the target's run {found.id} is an earlier copy of it, and one of the two has changed since ({found.status} "
        f"with {there} children there, {run['status']} with {here} here); to copy it again, delete run {found.id} "
        "there first"
    )


def _order(table: Any) -> list[Any]:
    """Rows in the order they were written (the target's ids then follow it)."""
    return [table.run_id] if table is SpaceDataRow else [table.id]
