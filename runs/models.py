"""SQLAlchemy 2 tables of the results store; the Alembic migrations create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


def utcnow() -> datetime:
    """Timestamps are stored in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class RunRow(Base):
    """One search: what was searched, how, with which seed, and where it stands."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(200))
    space: Mapped[str] = mapped_column(String(500))
    strategy: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    n_children: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), index=True)
    code_version: Mapped[str] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    driver: Mapped[str | None] = mapped_column(String(300))  # host:pid of the process running the search
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChildRow(Base):
    """One candidate: its tokens and spec, how it was sampled, and what training it gave."""

    __tablename__ = "children"
    __table_args__ = (
        UniqueConstraint("run_id", "number", name="uq_children_run_number"),
        # the dashboard's queries on big runs (migration 0006): a run's rewards in child order and its counts by
        # status read from the first index alone, never from the rows; pages sorted by reward from the second
        Index("ix_children_run_status_number", "run_id", "status", "number", "batch", "reward"),
        Index("ix_children_run_reward", "run_id", "reward"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    batch: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[list[int]] = mapped_column(JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), index=True)
    reward: Mapped[float | None] = mapped_column(Float)
    controller_reward: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_acc: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    curves: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(100))
    node: Mapped[str | None] = mapped_column(String(200))  # the Ray node it ran on (migration 0005)
    log_prob: Mapped[float | None] = mapped_column(Float)
    entropy: Mapped[float | None] = mapped_column(Float)
    policy_version: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    wall_time: Mapped[float | None] = mapped_column(Float)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class UpdateRow(Base):
    """One controller update: its loss, baseline, batch reward and entropy."""

    __tablename__ = "controller_updates"
    __table_args__ = (UniqueConstraint("run_id", "policy_version", name="uq_updates_run_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    batch: Mapped[int] = mapped_column(Integer)
    policy_version: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    mean_reward: Mapped[float] = mapped_column(Float)
    entropy: Mapped[float] = mapped_column(Float)
    n_children: Mapped[int] = mapped_column(Integer)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @classmethod
    def of(cls, run_id: int, batch: int, stats: dict[str, Any]) -> UpdateRow:
        """The row of an update from its statistics (`l2l.controllers.UpdateStats` as a dict)."""
        return cls(
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


class CheckpointRow(Base):
    """The controller's state after its latest update (one per run: each update replaces it), and how many
    children it accounts for; what the children table holds is left out of it (`l2l.controllers.Ledger`)."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    batch: Mapped[int] = mapped_column(Integer)
    next_child: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EpochRow(Base):
    """One epoch of a weight-sharing search: the shared weights' training loss, and what the controller
    learned from the rewards of architectures scored with those weights."""

    __tablename__ = "shared_epochs"
    __table_args__ = (UniqueConstraint("run_id", "epoch", name="uq_shared_epochs_run_epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float] = mapped_column(Float)
    train_steps: Mapped[int] = mapped_column(Integer)
    mean_reward: Mapped[float | None] = mapped_column(Float)
    entropy: Mapped[float | None] = mapped_column(Float)
    updates: Mapped[int] = mapped_column(Integer)
    wall_time: Mapped[float] = mapped_column(Float)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SpaceDataRow(Base):
    """What a run's space measured once, when the run started (a placement's profiled op graph), so that the
    space rebuilt to resume the run or retrain a child gives the same rewards (`SearchSpace.pinned_data`); and
    the decisions it declared then, which the run's tokens index (a plugin edited since reads them otherwise)."""

    __tablename__ = "space_data"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    decisions: Mapped[list[Any] | None] = mapped_column(JSON)  # migration 0008; none in runs from before it


class StoreMarkRow(Base):
    """A store's high-water marks: ``runs``, the largest run id ever deleted. SQLite hands out the next id after
    the largest one present, so the newest run deleted gave its id to the next new run, and every reference to it
    (a `--resume`, a watcher, a shared dashboard link, an export's name) to another run; a new SQLite run now
    takes an id past this mark (`l2l.runs.store.Store.create_run`). PostgreSQL's sequences never reuse one."""

    __tablename__ = "store_marks"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


def next_run_id() -> Any:
    """The id a new run takes on SQLite, as an expression of the insert itself (one statement, so two processes
    creating runs at once cannot both read one maximum): past every id present and the largest deleted."""
    top = select(func.max(RunRow.id)).scalar_subquery()
    mark = select(StoreMarkRow.value).where(StoreMarkRow.name == "runs").scalar_subquery()
    return func.max(func.coalesce(top, 0), func.coalesce(mark, 0)) + 1


def mark_deleted_run(session: Session, run_id: int) -> None:
    """Keep ``run_id`` as the largest deleted, if it is: `next_run_id` never hands it out again."""
    mark = session.get(StoreMarkRow, "runs")
    if mark is None:
        session.add(StoreMarkRow(name="runs", value=run_id))
    else:
        mark.value = max(mark.value, run_id)
