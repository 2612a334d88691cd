"""Copying runs from one store to another (`l2l db copy`): a laptop's SQLite file onto a team's PostgreSQL.

A run is copied whole, in one transaction on the target: the run, its children, controller updates,
checkpoint, weight-sharing epochs and what its space measured, under a new run id (ids are the target's
to give). The source is only read. A run still being recorded (its driver alive) is refused, since the
copy would miss what comes next; a run the target already holds (the same creation time, space, seed and
settings: an earlier copy) is skipped, so copying a store again adds only what is new.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from l2l.runs import models
from l2l.runs.models import CheckpointRow, ChildRow, EpochRow, RunRow, SpaceDataRow, UpdateRow
from l2l.runs.store import RunNotFound, Store, StoreError

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


def copy_runs(source: Store, target: Store, run_ids: Iterable[int] | None = None) -> Iterator[Copied]:
    """Copy ``run_ids`` (default: every run, oldest first) of ``source`` into ``target``, one run at a time.
    `RunNotFound` for an id the source does not hold, before anything is copied."""
    from l2l.runs.driver import run_state

    if source.url == target.url:
        raise StoreError(f"cannot copy store {source.label} onto itself; name another store with --to")
    known = [r.id for r in reversed(source.list_runs())]
    wanted = known if run_ids is None else list(dict.fromkeys(run_ids))
    missing = [i for i in wanted if i not in set(known)]
    if missing:
        shown = ", ".join(map(str, known[-10:])) or "none"
        raise RunNotFound(f"no run {missing[0]} in store {source.label}; its runs: {shown}")
    for run_id in wanted:
        state = run_state(source.get_run(run_id))
        if state == "running":
            yield Copied(run_id, None, {}, "it is running: copy it when it stops (the copy would miss what comes next)")
            continue
        yield _copy_one(source, target, run_id)


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
    microsecond, with its space, seed and strategy)."""
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
        for found in t.scalars(select(RunRow).where(_same_run(run))):
            if _columns(found)["config"] == run["config"]:
                return Copied(run_id, found.id, {}, f"the target holds it already, as run {found.id}")
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


def _order(table: Any) -> list[Any]:
    """Rows in the order they were written (the target's ids then follow it)."""
    return [table.run_id] if table is SpaceDataRow else [table.id]
