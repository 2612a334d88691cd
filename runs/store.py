"""The results store: runs, children, controller updates and checkpoints in any SQLAlchemy database.

Only the driver writes here. Every write is its own transaction, committed before the loop goes
on, so a crash loses at most the children that were in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from l2l.runs.models import Base, CheckpointRow, ChildRow, RunRow, UpdateRow, utcnow

CHILDREN = cast(Table, ChildRow.__table__)  # for the Core statements of the per-child writes
# one compiled statement records every finished child: executemany, with the SET columns taken from the rows
_FINISH = update(CHILDREN).where(CHILDREN.c.run_id == bindparam("w_run"), CHILDREN.c.number == bindparam("w_number"))

DEFAULT_STORAGE = "sqlite:///l2l.db"
RUN_STATUSES = ("running", "interrupted", "done", "failed")
CHILD_STATUSES = ("queued", "running", "done", "failed")


class StoreError(RuntimeError):
    """The results store cannot be opened, read or written; the message names the database and the operation."""


class RunNotFound(StoreError):
    """No run with the given id exists in this store."""


@dataclass(frozen=True)
class RunRecord:
    """A run as read from the store."""

    id: int
    name: str | None
    space: str
    strategy: str
    config: dict[str, Any]
    seed: int
    n_children: int
    status: str
    code_version: str
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ChildRecord:
    """A child as read from the store."""

    number: int
    batch: int
    tokens: tuple[int, ...]
    spec: dict[str, Any]
    status: str
    reward: float | None
    controller_reward: float | None
    val_loss: float | None
    val_acc: float | None
    metrics: dict[str, Any]
    curves: dict[str, Any]
    error: str | None
    worker: str | None
    device: str | None
    log_prob: float | None
    entropy: float | None
    policy_version: int
    attempts: int
    wall_time: float | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class UpdateRecord:
    """A controller update as read from the store."""

    batch: int
    policy_version: int
    loss: float
    baseline: float | None
    mean_reward: float
    entropy: float
    n_children: int
    extra: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class CheckpointRecord:
    """The latest saved controller state of a run."""

    batch: int
    next_child: int
    state: bytes


@dataclass(frozen=True)
class NewChild:
    """What the loop knows of a child before it runs."""

    number: int
    batch: int
    tokens: tuple[int, ...]
    spec: dict[str, Any]
    log_prob: float
    entropy: float
    policy_version: int


def _record(cls: type[Any], row: Any) -> Any:
    names = cls.__dataclass_fields__
    values = {n: getattr(row, n) for n in names}
    if "tokens" in values:
        values["tokens"] = tuple(values["tokens"])
    return cls(**values)


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class Store:
    """A results store on one database URL; `Store(url)` creates or migrates the schema with Alembic."""

    def __init__(
        self, url: str = DEFAULT_STORAGE, *, migrate: bool = True, engine_kwargs: dict[str, Any] | None = None
    ):
        self.url = url
        self.label = safe_url(url)
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise StoreError(
                f"invalid storage URL {url!r}: expected e.g. sqlite:///l2l.db or postgresql+psycopg://host/db"
            ) from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            parent = Path(parsed.database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open store {self.label}: directory {str(parent)!r} does not exist")
        try:
            self.engine: Engine = create_engine(url, **(engine_kwargs or {}))
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StoreError(f"cannot open store {self.label}: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (creating it in an empty database)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot migrate store {self.label}: {_short(exc)}") from exc

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def session_scope(self, what: str = "access") -> Iterator[Session]:
        """A session that commits on success, rolls back on error, always closes, and wraps database errors."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(f"store {self.label}: {what} failed: {_short(exc)}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def connection_scope(self, what: str = "access") -> Iterator[Connection]:
        """A plain transaction without the ORM session: for the per-child writes of a busy driver."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.label}: {what} failed: {_short(exc)}") from exc

    # runs ---------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        space: str,
        strategy: str,
        config: dict[str, Any],
        seed: int,
        n_children: int,
        code_version: str,
        name: str | None = None,
    ) -> int:
        """Record a new run in status ``running``; returns its id."""
        with self.session_scope("create run") as s:
            row = RunRow(
                name=name,
                space=space,
                strategy=strategy,
                config=config,
                seed=seed,
                n_children=n_children,
                status="running",
                code_version=code_version,
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def get_run(self, run_id: int) -> RunRecord:
        """The run ``run_id``; `RunNotFound` names the known ids when it does not exist."""
        with self.session_scope("read run") as s:
            row = s.get(RunRow, run_id)
            if row is None:
                ids = s.scalars(select(RunRow.id).order_by(RunRow.id.desc()).limit(10)).all()
                known = ", ".join(str(i) for i in ids) or "none"
                raise RunNotFound(f"no run {run_id} in store {self.label}; latest runs: {known}")
            return _record(RunRecord, row)  # type: ignore[no-any-return]

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The newest runs first."""
        with self.session_scope("list runs") as s:
            rows = s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit)).all()
            return [_record(RunRecord, r) for r in rows]

    def set_run_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Move a run to ``status`` (running, interrupted, done, failed)."""
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; known: {', '.join(RUN_STATUSES)}")
        values: dict[str, Any] = {"status": status, "error": error, "updated_at": utcnow()}
        if status in ("done", "failed"):
            values["finished_at"] = utcnow()
        with self.session_scope("set run status") as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything recorded for it."""
        self.get_run(run_id)
        with self.session_scope("delete run") as s:
            for table in (CheckpointRow, UpdateRow, ChildRow):
                s.execute(delete(table).where(table.run_id == run_id))
            s.execute(delete(RunRow).where(RunRow.id == run_id))

    # children -----------------------------------------------------------------------------------

    def add_children(self, run_id: int, children: Sequence[NewChild], running: bool = False) -> None:
        """Record sampled children as ``queued`` (or already ``running``: handed to workers), in one transaction."""
        if not children:
            return
        now = utcnow() if running else None
        rows = [
            {
                "run_id": run_id,
                "number": c.number,
                "batch": c.batch,
                "tokens": list(c.tokens),
                "spec": c.spec,
                "status": "running" if running else "queued",
                "log_prob": c.log_prob,
                "entropy": c.entropy,
                "policy_version": c.policy_version,
                "attempts": 1 if running else 0,
                "started_at": now,
                "metrics": {},
                "curves": {},
            }
            for c in children
        ]
        with self.connection_scope("add children") as conn:
            conn.execute(insert(CHILDREN), rows)

    def mark_running(self, run_id: int, numbers: Sequence[int], worker: str | None = None) -> None:
        """Children handed to the executor: status ``running``, one more attempt, start time."""
        with self.session_scope("mark children running") as s:
            s.execute(
                update(ChildRow)
                .where(ChildRow.run_id == run_id, ChildRow.number.in_(list(numbers)))
                .values(status="running", attempts=ChildRow.attempts + 1, started_at=utcnow(), worker=worker)
            )

    def finish_child(self, run_id: int, number: int, result: dict[str, Any], controller_reward: float) -> None:
        """Record a child's result (``Result.to_json()``) and the reward its controller got."""
        self.finish_children(run_id, [(number, result, controller_reward)])

    def finish_children(self, run_id: int, finished: Sequence[tuple[int, dict[str, Any], float]]) -> None:
        """Record several children's results, each as ``(number, Result.to_json(), controller reward)``, in one
        transaction: all of them or, when one cannot be recorded, none."""
        rows = []
        for number, result, controller_reward in finished:
            status = result["status"]
            if status not in ("done", "failed"):
                raise StoreError(f"finished child {number} has status {status!r}; expected done or failed")
            info = dict(result.get("info") or {})
            rows.append(
                {
                    "w_run": run_id,
                    "w_number": number,
                    "status": status,
                    "reward": result.get("reward") if status == "done" else None,
                    "controller_reward": controller_reward,
                    "val_loss": result.get("val_loss"),
                    "val_acc": result.get("val_acc"),
                    "metrics": {"test": result.get("test") or {}, "cost": result.get("cost") or {}, "info": info},
                    "curves": result.get("curves") or {},
                    "error": result.get("error"),
                    "worker": info.get("worker"),
                    "device": info.get("device"),
                    "wall_time": info.get("wall_time"),
                    "started_at": _timestamp(info.get("started")),
                    "finished_at": _timestamp(info.get("finished")) or utcnow(),
                }
            )
        if not rows:
            return
        numbers = [int(r["w_number"]) for r in rows]
        with self.connection_scope(f"record child(ren) {', '.join(map(str, numbers))}") as conn:
            res = conn.execute(_FINISH, rows)
            if res.rowcount != len(rows):  # name the missing ones; the transaction rolls back
                found = set(
                    conn.scalars(
                        select(CHILDREN.c.number).where(CHILDREN.c.run_id == run_id, CHILDREN.c.number.in_(numbers))
                    )
                )
                missing = ", ".join(str(n) for n in numbers if n not in found)
                raise StoreError(f"store {self.label}: run {run_id} has no child {missing} to record")

    def requeue_unfinished(self, run_id: int, reason: str) -> int:
        """Children left ``running`` (interrupted, or the driver died) go back to ``queued``; returns how many."""
        with self.session_scope("requeue children") as s:
            res = s.execute(
                update(ChildRow)
                .where(ChildRow.run_id == run_id, ChildRow.status == "running")
                .values(status="queued", error=reason)
            )
            return int(res.rowcount)  # type: ignore[attr-defined]

    def children(self, run_id: int, status: str | None = None) -> list[ChildRecord]:
        """Children of a run in order of their number, optionally only those with ``status``."""
        with self.session_scope("read children") as s:
            q = select(ChildRow).where(ChildRow.run_id == run_id)
            if status is not None:
                q = q.where(ChildRow.status == status)
            return [_record(ChildRecord, r) for r in s.scalars(q.order_by(ChildRow.number)).all()]

    def top_children(self, run_id: int, k: int = 10) -> list[ChildRecord]:
        """The ``k`` finished children with the highest reward."""
        with self.session_scope("read top children") as s:
            q = (
                select(ChildRow)
                .where(ChildRow.run_id == run_id, ChildRow.status == "done")
                .order_by(ChildRow.reward.desc(), ChildRow.number)
                .limit(k)
            )
            return [_record(ChildRecord, r) for r in s.scalars(q).all()]

    def count_children(self, run_id: int) -> dict[str, int]:
        """How many children of the run are in each status."""
        with self.session_scope("count children") as s:
            rows = s.execute(
                select(ChildRow.status, func.count()).where(ChildRow.run_id == run_id).group_by(ChildRow.status)
            ).all()
        counts = {status: 0 for status in CHILD_STATUSES}
        counts.update({str(k): int(v) for k, v in rows})
        return counts

    # controller ---------------------------------------------------------------------------------

    def record_update(self, run_id: int, batch: int, stats: dict[str, Any], state: bytes, next_child: int) -> None:
        """Record a controller update and the checkpoint after it in one transaction."""
        with self.session_scope(f"record update of batch {batch}") as s:
            s.add(
                UpdateRow(
                    run_id=run_id,
                    batch=batch,
                    policy_version=stats["policy_version"],
                    loss=stats["loss"],
                    baseline=stats["baseline"],
                    mean_reward=stats["mean_reward"],
                    entropy=stats["entropy"],
                    n_children=stats["n"],
                    extra=dict(stats.get("extra") or {}),
                )
            )
            s.add(CheckpointRow(run_id=run_id, batch=batch, next_child=next_child, state=state))
            s.execute(update(RunRow).where(RunRow.id == run_id).values(updated_at=utcnow()))

    def updates(self, run_id: int) -> list[UpdateRecord]:
        """The controller updates of a run, oldest first."""
        with self.session_scope("read updates") as s:
            q = select(UpdateRow).where(UpdateRow.run_id == run_id).order_by(UpdateRow.policy_version)
            return [_record(UpdateRecord, r) for r in s.scalars(q).all()]

    def latest_checkpoint(self, run_id: int) -> CheckpointRecord | None:
        """The newest checkpoint of a run, or None before its first update."""
        with self.session_scope("read checkpoint") as s:
            q = (
                select(CheckpointRow)
                .where(CheckpointRow.run_id == run_id)
                .order_by(CheckpointRow.batch.desc())
                .limit(1)
            )
            row = s.scalars(q).first()
            return (
                None if row is None else CheckpointRecord(batch=row.batch, next_child=row.next_child, state=row.state)
            )

    def table_names(self) -> list[str]:
        """Tables present in the database (for checks and tests)."""
        try:
            return sorted(inspect(self.engine).get_table_names())
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.label}: listing tables failed: {_short(exc)}") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else None


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = [
    "Base",
    "CheckpointRecord",
    "ChildRecord",
    "DEFAULT_STORAGE",
    "NewChild",
    "RunNotFound",
    "RunRecord",
    "Store",
    "StoreError",
    "UpdateRecord",
    "safe_url",
]
