"""The runs of a results store: creating one, reading it, its status, its driver and heartbeat, deleting it
(`l2l.runs.store.Store` is one of these; its children, updates and checkpoints are kept there)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from l2l.runs import models
from l2l.runs.models import CheckpointRow, ChildRow, EpochRow, RunRow, SpaceDataRow, UpdateRow, utcnow
from l2l.runs.store_engine import Database
from l2l.runs.store_records import RUN_STATUSES, RunNotFound, RunRecord, StoreError, known_id, record_from_row


class RunStore(Database):
    """What a store records of its runs themselves."""

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
