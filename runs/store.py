"""The results store: runs, children, controller updates and checkpoints in any SQLAlchemy database.

Only the driver writes here. Every write is its own transaction, committed before the loop goes
on, so a crash loses at most the children that were in flight. The database itself (URL, engine,
migrations, transaction scopes) is `l2l.runs.store_engine`; the records handed out are
`l2l.runs.store_records`. Both are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update

from l2l.runs.models import Base, CheckpointRow, ChildRow, RunRow, UpdateRow, utcnow
from l2l.runs.store_engine import DEFAULT_STORAGE, safe_url
from l2l.runs.store_records import (
    CHILD_STATUSES,
    RUN_STATUSES,
    SHARED_STATUSES,
    CheckpointRecord,
    ChildRecord,
    NewChild,
    RunNotFound,
    RunRecord,
    StoreError,
    UpdateRecord,
    known_id,
    record_from_row,
    timestamp_of,
)
from l2l.runs.store_runs import RunStore
from l2l.runs.store_sharing import EpochRecord, ScoredChild, SharingStore
from l2l.search_spaces.results import RUNTIME_KEYS

CHILDREN = cast(Table, ChildRow.__table__)  # for the Core statements of the per-child writes
# one compiled statement records every finished child: executemany, with the SET columns taken from the rows
# (attempts counts the runs a worker's or node's death cost the executor as well: ``runtime.retries``)
_FINISH = (
    update(CHILDREN)
    .where(CHILDREN.c.run_id == bindparam("w_run"), CHILDREN.c.number == bindparam("w_number"))
    .values(attempts=CHILDREN.c.attempts + bindparam("w_retries"))
)


class Store(SharingStore, RunStore):
    """A results store on one database URL; `Store(url)` creates or migrates the schema with Alembic. Its runs'
    own records are kept by `l2l.runs.store_runs.RunStore`, a weight-sharing search's by `SharingStore`."""

    # children -----------------------------------------------------------------------------------

    def add_children(
        self, run_id: int, children: Sequence[NewChild], running: bool = False, since: datetime | None = None
    ) -> None:
        """Record sampled children as ``queued`` (or already ``running``: handed to workers), in one transaction;
        ``since``: when they were queued and started, where that was before now (a child recorded after it ran)."""
        if not children:
            return
        now = (since or utcnow()) if running else None
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
                **({"queued_at": since} if since is not None else {}),
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
            # where and when it ran; results stored before l2l 0.2 kept these keys in info
            runtime = dict(result.get("runtime") or {key: info[key] for key in RUNTIME_KEYS if key in info})
            rows.append(
                {
                    "w_run": run_id,
                    "w_number": number,
                    "status": status,
                    "reward": result.get("reward") if status == "done" else None,
                    "controller_reward": controller_reward,
                    "val_loss": result.get("val_loss"),
                    "val_acc": result.get("val_acc"),
                    "metrics": {
                        "test": result.get("test") or {},
                        "cost": result.get("cost") or {},
                        "info": info,
                        "runtime": runtime,
                    },
                    "curves": result.get("curves") or {},
                    "error": result.get("error"),
                    "w_retries": int(runtime.get("retries") or 0),
                    "worker": runtime.get("worker"),
                    "device": runtime.get("device"),
                    "node": runtime.get("node"),
                    "wall_time": runtime.get("wall_time"),
                    "started_at": timestamp_of(runtime.get("started")),
                    "finished_at": timestamp_of(runtime.get("finished")) or utcnow(),
                }
            )
        if not rows:
            return
        numbers = [int(r["w_number"]) for r in rows]
        with self.connection_scope(f"recording the result(s) of child(ren) {', '.join(map(str, numbers))}") as conn:
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
        if status is not None and status not in CHILD_STATUSES + SHARED_STATUSES:
            known = ", ".join(CHILD_STATUSES + SHARED_STATUSES)
            raise StoreError(f"unknown child status {status!r}; known: {known}")
        with self.session_scope("read children") as s:
            q = select(ChildRow).where(ChildRow.run_id == run_id)
            if status is not None:
                q = q.where(ChildRow.status == status)
            return [record_from_row(ChildRecord, r) for r in s.scalars(q.order_by(ChildRow.number)).all()]

    def child(self, run_id: int, number: int) -> ChildRecord | None:
        """Child ``number`` of the run, or None when it has none by that number."""
        if not known_id(run_id, number):
            return None
        with self.session_scope("read child") as s:
            row = s.scalars(select(ChildRow).where(ChildRow.run_id == run_id, ChildRow.number == number)).first()
            return None if row is None else record_from_row(ChildRecord, row)

    def rewards(self, run_id: int) -> list[tuple[int, tuple[int, ...], float]]:
        """(number, tokens, reward) of the run's finished children with a reward, by number: what ranking
        architectures needs, without reading whole records (specs, metrics, curves)."""
        with self.session_scope("read rewards") as s:
            rows = s.execute(
                select(ChildRow.number, ChildRow.tokens, ChildRow.reward)
                .where(ChildRow.run_id == run_id, ChildRow.status == "done", ChildRow.reward.is_not(None))
                .order_by(ChildRow.number)
            ).all()
        return [(int(n), tuple(int(t) for t in tokens), float(r or 0.0)) for n, tokens, r in rows]

    def top_children(self, run_id: int, k: int = 10) -> list[ChildRecord]:
        """The ``k`` finished children with the highest reward."""
        with self.session_scope("read top children") as s:
            q = (
                select(ChildRow)
                .where(ChildRow.run_id == run_id, ChildRow.status == "done")
                .order_by(ChildRow.reward.desc(), ChildRow.number)
                .limit(k)
            )
            return [record_from_row(ChildRecord, r) for r in s.scalars(q).all()]

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
        """Record a controller update and the checkpoint after it in one transaction; the checkpoint replaces
        the run's previous one, which resume no longer needs (a long run keeps one, not one per update)."""
        with self.session_scope(f"record update of batch {batch}") as s:
            s.add(UpdateRow.of(run_id, batch, stats))
            s.execute(delete(CheckpointRow).where(CheckpointRow.run_id == run_id))
            s.add(CheckpointRow(run_id=run_id, batch=batch, next_child=next_child, state=state))
            s.execute(update(RunRow).where(RunRow.id == run_id).values(updated_at=utcnow()))

    def updates(self, run_id: int) -> list[UpdateRecord]:
        """The controller updates of a run, oldest first."""
        with self.session_scope("read updates") as s:
            q = select(UpdateRow).where(UpdateRow.run_id == run_id).order_by(UpdateRow.policy_version)
            return [record_from_row(UpdateRecord, r) for r in s.scalars(q).all()]

    def ledger(
        self, run_id: int, checkpoint: CheckpointRecord
    ) -> tuple[list[tuple[int, ...]], list[tuple[tuple[int, ...], float]]]:
        """What run ``run_id``'s controller had been through at ``checkpoint``, from the children and updates
        tables (an `l2l.controllers.Ledger`'s fields): the tokens of the children proposed before it, and
        the (tokens, reward) of the children its updates consumed, in the order they were consumed."""
        with self.session_scope("read ledger") as s:
            rows = s.execute(
                select(CHILDREN.c.number, CHILDREN.c.tokens, CHILDREN.c.controller_reward)
                .where(CHILDREN.c.run_id == run_id, CHILDREN.c.number < checkpoint.next_child)
                .order_by(CHILDREN.c.number)
            ).all()
            extras = s.scalars(
                select(UpdateRow.extra)
                .where(UpdateRow.run_id == run_id, UpdateRow.batch <= checkpoint.batch)
                .order_by(UpdateRow.batch)
            ).all()
        children = {int(n): (tuple(int(t) for t in tokens), r) for n, tokens, r in rows}
        learned: list[tuple[tuple[int, ...], float]] = []
        for number in (int(n) for extra in extras for n in (extra or {}).get("children", [])):
            tokens, reward = children.get(number, ((), None))
            if reward is None:
                raise StoreError(f"store {self.label}: run {run_id}'s updates consumed child {number}, with no reward")
            learned.append((tokens, float(reward)))
        return [tokens for tokens, _ in children.values()], learned

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


__all__ = [
    "Base",
    "CHILD_STATUSES",
    "CheckpointRecord",
    "ChildRecord",
    "DEFAULT_STORAGE",
    "EpochRecord",
    "NewChild",
    "RUN_STATUSES",
    "RunNotFound",
    "RunRecord",
    "ScoredChild",
    "Store",
    "StoreError",
    "UpdateRecord",
    "safe_url",
]
