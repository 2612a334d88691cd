"""The results store: runs, children, controller updates and checkpoints in any SQLAlchemy database.

Only the driver writes here. Every write is its own transaction, committed before the loop goes
on, so a crash loses at most the children that were in flight. The database itself (URL, engine,
migrations, transaction scopes) is `l2l.runs.store_engine`; the records handed out are
`l2l.runs.store_records`. Both are importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update

from l2l.runs import models
from l2l.runs.models import Base, CheckpointRow, ChildRow, EpochRow, RunRow, SpaceDataRow, UpdateRow, utcnow
from l2l.runs.store_engine import DEFAULT_STORAGE, Database, safe_url
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


class Store(SharingStore, Database):
    """A results store on one database URL; `Store(url)` creates or migrates the schema with Alembic."""

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
        space_data: dict[str, Any] | None = None,
        driver: str | None = None,
        decisions: list[Any] | None = None,
    ) -> int:
        """Record a new run in status ``running``, with what its space measured (``space_data``) and declared
        (``decisions``, `l2l.search_spaces.decisions_record`), and the process that drives it (``driver``, host:pid:
        a driver killed before its first heartbeat leaves a run that reads as stale); returns its id."""
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
                driver=driver,
                heartbeat_at=utcnow() if driver else None,
            )
            if self.engine.dialect.name == "sqlite":  # SQLite would give a deleted newest run's id again
                row.id = models.next_run_id()
            s.add(row)
            s.flush()
            if space_data or decisions is not None:
                s.add(SpaceDataRow(run_id=row.id, data=space_data or {}, decisions=decisions))
            return int(row.id)

    def run_decisions(self, run_id: int) -> list[Any] | None:
        """The decisions run ``run_id``'s space declared when it started; None for a run from before they were
        kept."""
        with self.session_scope("read run decisions") as s:
            found = s.scalar(select(SpaceDataRow.decisions).where(SpaceDataRow.run_id == run_id))
            return None if found is None else list(found)

    def space_data(self, run_id: int) -> dict[str, Any]:
        """What the run's space measured when the run started (`SearchSpace.pinned_data`); empty when nothing."""
        with self.session_scope("read space data") as s:
            data = s.scalar(select(SpaceDataRow.data).where(SpaceDataRow.run_id == run_id))
            return dict(data or {})

    def get_run(self, run_id: int) -> RunRecord:
        """The run ``run_id``; `RunNotFound` names the known ids when it does not exist."""
        with self.session_scope("read run") as s:
            row = s.get(RunRow, run_id) if known_id(run_id) else None
            if row is None:
                ids = s.scalars(select(RunRow.id).order_by(RunRow.id.desc()).limit(10)).all()
                known = ", ".join(str(i) for i in ids) or "none"
                raise RunNotFound(f"no run {run_id} in store {self.label}; latest runs: {known}")
            return record_from_row(RunRecord, row)

    def run_ids_named(self, name: str) -> list[int]:
        """The ids of the runs called ``name`` (`SearchConfig.name`), oldest first."""
        with self.session_scope("find runs by name") as s:
            return list(s.scalars(select(RunRow.id).where(RunRow.name == name).order_by(RunRow.id)).all())

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The newest runs first."""
        with self.session_scope("list runs") as s:
            rows = s.scalars(select(RunRow).order_by(RunRow.id.desc()).limit(limit)).all()
            return [record_from_row(RunRecord, r) for r in rows]

    def set_run_status(self, run_id: int, status: str, error: str | None = None) -> None:
        """Move a run to ``status`` (running, interrupted, done, failed)."""
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; known: {', '.join(RUN_STATUSES)}")
        values: dict[str, Any] = {"status": status, "error": error, "updated_at": utcnow()}
        if status in ("done", "failed"):
            values["finished_at"] = utcnow()
        elif status == "running":  # resumed: it has not finished (`runs show` said running, finished at ...)
            values["finished_at"] = None
        with self.session_scope("set run status") as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def set_run_config(self, run_id: int, config: dict[str, Any]) -> None:
        """Replace the stored settings of a run (a resume that moved it to another cluster records so)."""
        with self.session_scope("set run config") as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(config=config, updated_at=utcnow()))

    def claim_run(self, run_id: int, driver: str) -> None:
        """Record that process ``driver`` (host:pid) runs ``run_id`` now."""
        with self.session_scope("claim run") as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(driver=driver, heartbeat_at=utcnow()))

    def take_over_run(self, run_id: int, driver: str, was: tuple[str | None, str]) -> bool:
        """Claim ``run_id`` for ``driver`` and mark it running, only if its (driver, status) are still ``was``
        (what a resume read before it started): of two resumes at once, one claims it and the other learns it
        lost, whichever order they read and write in. Returns whether it won."""
        held = RunRow.driver.is_(None) if was[0] is None else RunRow.driver == was[0]
        now = utcnow()
        with self.session_scope("claim run") as s:
            claim = update(RunRow).where(RunRow.id == run_id, held, RunRow.status == was[1])
            values = {"driver": driver, "heartbeat_at": now, "status": "running", "error": None, "updated_at": now}
            result = s.execute(claim.values(**values, finished_at=None))
            return int(result.rowcount) == 1  # type: ignore[attr-defined]

    def heartbeat(self, run_id: int) -> None:
        """Say that the run's driver is alive (`l2l search --resume` refuses a run whose driver is)."""
        with self.session_scope("heartbeat") as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=utcnow()))

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything recorded for it."""
        self.get_run(run_id)
        with self.session_scope("delete run") as s:
            for table in (CheckpointRow, UpdateRow, ChildRow, EpochRow, SpaceDataRow):
                s.execute(delete(table).where(table.run_id == run_id))
            s.execute(delete(RunRow).where(RunRow.id == run_id))
            if self.engine.dialect.name == "sqlite":  # the only dialect that would reuse it (PostgreSQL never does)
                models.mark_deleted_run(s, run_id)

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
