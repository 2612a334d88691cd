"""What the results store hands out and takes in: frozen records of runs, children, updates and checkpoints.

Plain values, so the search loop, the CLI and the plots never hold a database session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

RUN_STATUSES = ("running", "interrupted", "done", "failed")
CHILD_STATUSES = ("queued", "running", "done", "failed")
MAX_ID = 2**31 - 1  # the largest run id or child number an integer column holds (PostgreSQL refuses more)
SHARED_STATUSES = ("shared", "derived", "candidate")  # a weight-sharing run's scored architectures (store_sharing)


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 in UTC (SQLite hands back naive datetimes that were written in UTC): what the
    dashboard and `l2l runs export` show, the same from every store."""
    if value is None:
        return None
    return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def timestamp_of(value: Any) -> datetime | None:
    """A result's runtime time (seconds since the epoch) as a UTC datetime; None for none."""
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else None


def known_id(*ids: int) -> bool:
    """Whether every id fits the store's integer columns; a query with a larger one is an error on PostgreSQL."""
    return all(0 <= i <= MAX_ID for i in ids)


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
    driver: str | None = None
    heartbeat_at: datetime | None = None


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
    node: str | None = None  # the Ray node it ran on; None in-process


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
    log_prob: float | None  # None: no controller sampled it (a weight-sharing run's retrained child)
    entropy: float | None
    policy_version: int


R = TypeVar("R")


def record_from_row(cls: type[R], row: Any) -> R:
    """The record ``cls`` with the fields of ORM ``row`` (tokens as a tuple), so no row escapes a session."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    values = {n: getattr(row, n) for n in names}
    if "tokens" in values:
        values["tokens"] = tuple(values["tokens"])
    return cls(**values)
