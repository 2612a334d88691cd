"""What the store records of a weight-sharing search: its epochs, and its architectures scored with shared weights.

An epoch is recorded in one transaction with the architectures its controller sampled (children of
status ``shared``: their rewards come from the shared weights, not from training them), its controller
updates and the checkpoint after it (shared weights, their optimizer, controller, random state), so a
search killed at any moment resumes at the start of the epoch it was in. The architectures sampled at
the end (``candidate``, scored on the whole validation split) and the one kept (``derived``) are
recorded in one more. A derived architecture trained from scratch (`l2l runs best --retrain`) is a
child of status ``done``, like those of a plain search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from l2l.runs.models import CheckpointRow, ChildRow, EpochRow, RunRow, UpdateRow, utcnow
from l2l.runs.store_engine import Database
from l2l.runs.store_records import record_from_row


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a weight-sharing search as read from the store."""

    epoch: int
    train_loss: float
    train_steps: int
    mean_reward: float | None
    entropy: float | None
    updates: int
    wall_time: float
    extra: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class ScoredChild:
    """An architecture scored with the shared weights, to record as a child of status ``status``."""

    number: int
    batch: int
    tokens: tuple[int, ...]
    spec: dict[str, Any]
    status: str
    reward: float
    metrics: dict[str, float]
    log_prob: float | None = None
    entropy: float | None = None
    policy_version: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    controller_reward: float | None = None  # what the controller learned from (its reward transform's), if other


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None  # JSON (and PostgreSQL) hold no NaN


def _child_row(run_id: int, c: ScoredChild) -> dict[str, Any]:
    now = utcnow()
    metrics = {k: _finite(v) for k, v in c.metrics.items()}
    return {
        "run_id": run_id,
        "number": c.number,
        "batch": c.batch,
        "tokens": list(c.tokens),
        "spec": c.spec,
        "status": c.status,
        "reward": c.reward,
        "controller_reward": c.reward if c.controller_reward is None else c.controller_reward,
        "val_loss": metrics.get("val_loss"),
        "val_acc": metrics.get("val_acc"),
        "metrics": {"test": {}, "cost": {}, "info": {**c.info, "shared": metrics}, "runtime": {}},
        "curves": {},
        "log_prob": c.log_prob,
        "entropy": c.entropy,
        "policy_version": c.policy_version,
        "attempts": 1,
        "queued_at": now,
        "started_at": now,
        "finished_at": now,
    }


class SharingStore(Database):
    """The weight-sharing part of `l2l.runs.store.Store`."""

    def record_epoch(
        self,
        run_id: int,
        epoch: EpochRecord,
        updates: Sequence[dict[str, Any]],
        children: Sequence[ScoredChild],
        state: bytes,
        next_child: int,
    ) -> None:
        """Record an epoch, its controller updates and scored architectures, and the checkpoint after it,
        in one transaction (the checkpoint replaces the run's previous one)."""
        with self.session_scope(f"record epoch {epoch.epoch}") as s:
            if children:
                s.execute(insert(ChildRow), [_child_row(run_id, c) for c in children])
            for u in updates:
                s.add(UpdateRow.of(run_id, u["batch"], u))
            s.add(
                EpochRow(
                    run_id=run_id,
                    epoch=epoch.epoch,
                    train_loss=epoch.train_loss,
                    train_steps=epoch.train_steps,
                    mean_reward=epoch.mean_reward,
                    entropy=epoch.entropy,
                    updates=epoch.updates,
                    wall_time=epoch.wall_time,
                    extra=dict(epoch.extra),
                )
            )
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            s.add(CheckpointRow(run_id=run_id, batch=epoch.epoch, next_child=next_child, state=state))
            s.execute(update(RunRow).where(RunRow.id == run_id).values(updated_at=utcnow()))

    def record_scored(self, run_id: int, children: Sequence[ScoredChild]) -> None:
        """Record architectures scored at the end of a weight-sharing search (candidates and the derived
        one) in one transaction."""
        if children:
            with self.session_scope("record derived architectures") as s:
                s.execute(insert(ChildRow), [_child_row(run_id, c) for c in children])

    def discard_children_from(self, run_id: int, number: int) -> int:
        """Remove the children numbered ``number`` and later (what a resumed search records again)."""
        with self.session_scope("discard children") as s:
            res = s.execute(delete(ChildRow).where(ChildRow.run_id == run_id, ChildRow.number >= number))
            return int(res.rowcount)  # type: ignore[attr-defined]

    def epochs(self, run_id: int) -> list[EpochRecord]:
        """The epochs of a weight-sharing search, in order."""
        with self.session_scope("read epochs") as s:
            q = select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch)
            return [record_from_row(EpochRecord, r) for r in s.scalars(q).all()]
