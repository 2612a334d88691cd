"""The dashboard's view of a results store: read-only, one short transaction per question, columns chosen.

The engine refuses writes (SQLite ``PRAGMA query_only``, PostgreSQL read-only transactions) and never
migrates; SQLite stores are in WAL mode (the writer sets it), where a reader never blocks the driver's
writes. Every query is a SQLAlchemy expression with bound parameters: sort keys come from a whitelist,
filters are parameters, nothing from a request becomes SQL text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, Table, Text, func, inspect, or_, select, type_coerce
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import SQLAlchemyError

from l2l.runs.dashboard.engine import FollowedEngine, bulk, decoder, plain_rows, spec_contains
from l2l.runs.dashboard.summaries import TRAINED, run_summary
from l2l.runs.models import ChildRow, EpochRow, RunRow, SpaceDataRow, UpdateRow
from l2l.runs.store_engine import safe_url, short_error, storage_flag_of
from l2l.runs.store_records import ChildRecord, RunNotFound, RunRecord, StoreError, iso, known_id

RUNS = cast(Table, RunRow.__table__)
CHILDREN = cast(Table, ChildRow.__table__)
UPDATES = cast(Table, UpdateRow.__table__)
EPOCHS = cast(Table, EpochRow.__table__)
SPACE_DATA = cast(Table, SpaceDataRow.__table__)

# what the children table may be sorted by: request text only ever picks a key of this dict
SORTED_BY = "number status reward val_acc val_loss wall_time worker device started_at finished_at"
SORT_KEYS = {name: CHILDREN.c[name] for name in SORTED_BY.split()}
MAX_PER_PAGE = 200
# children with a reward: trained ones, and a weight-sharing search's architectures scored with its shared weights
SCORED = ("done", "shared", "candidate", "derived")
# the columns of a child that the table shows (its spec, curves and tokens stay in the database)
ROW_COLUMNS = [
    CHILDREN.c[n]
    for n in (
        "number",
        "batch",
        "status",
        "reward",
        "val_acc",
        "val_loss",
        "metrics",
        "error",
        "worker",
        "device",
        "node",
        "wall_time",
        "started_at",
        "finished_at",
    )
]


class Reader:
    """The questions the dashboard asks of a store, each answered in one short read transaction."""

    def __init__(self, url: str) -> None:
        self.label, self.flag = safe_url(url), storage_flag_of(url)  # the flag: for the hints it gives
        self.engine = FollowedEngine(url)  # a SQLite file deleted or replaced under it is noticed
        with self.read("open store") as conn:
            tables = set(inspect(conn).get_table_names())
            if "runs" not in tables:
                raise StoreError(f"{self.label} is not an l2l store: it has no runs table")
            self.revision = _revision(conn) if "alembic_version" in tables else None
            self.has_space_data = "space_data" in tables  # a store written before it existed has none

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def read(self, what: str) -> Iterator[Connection]:
        """One read transaction, rolled back at the end; database errors become a `StoreError`."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.label}: {what} failed: {short_error(exc)}") from exc

    # runs -----------------------------------------------------------------------------------------

    def runs(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The newest runs (after the ``offset`` newest), each with its children counted by status and its best
        reward."""
        with self.read("list runs") as conn:
            query = select(RUNS).order_by(RUNS.c.id.desc()).limit(limit).offset(offset)
            rows = conn.execute(query).mappings().all()
            ids = [int(r["id"]) for r in rows]
            counts = _counts(conn, ids)
            best = dict(
                conn.execute(
                    select(CHILDREN.c.run_id, func.max(CHILDREN.c.reward))
                    .where(CHILDREN.c.run_id.in_(ids), CHILDREN.c.status.in_(SCORED))
                    .group_by(CHILDREN.c.run_id)
                ).all()
            )
        return [
            run_summary(RunRecord(**dict(r)), counts.get(int(r["id"]), {}), best.get(r["id"]), self.flag) for r in rows
        ]

    def count_runs(self) -> int:
        """How many runs the store holds."""
        with self.read("count runs") as conn:
            return int(conn.scalar(select(func.count()).select_from(RUNS)) or 0)

    def run(self, run_id: int) -> RunRecord:
        """The run ``run_id``; `RunNotFound` when there is none."""
        if not known_id(run_id):
            raise RunNotFound(f"no run {run_id} in store {self.label}")
        with self.read("read run") as conn:
            row = conn.execute(select(RUNS).where(RUNS.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(f"no run {run_id} in store {self.label}")
        return RunRecord(**dict(row))

    def summary(self, run_id: int) -> dict[str, Any]:
        """A run's state, counts, best child and how many updates and epochs it has: what a page polls."""
        run = self.run(run_id)
        with self.read("summarize run") as conn:
            counts = _counts(conn, [run_id]).get(run_id, {})
            top = conn.execute(
                select(CHILDREN.c.number, CHILDREN.c.reward)
                .where(CHILDREN.c.run_id == run_id, _rewarded(run), CHILDREN.c.reward.is_not(None))
                .order_by(CHILDREN.c.reward.desc(), CHILDREN.c.number)
                .limit(1)
            ).first()
            n_updates = conn.scalar(select(func.count()).where(UPDATES.c.run_id == run_id)) or 0
            n_epochs = conn.scalar(select(func.count()).where(EPOCHS.c.run_id == run_id)) or 0
        out = run_summary(run, counts, top[1] if top else None, self.flag)
        out.update(best_child=None if top is None else int(top[0]), updates=int(n_updates), epochs=int(n_epochs))
        return out

    def stamp(self, run_id: int) -> tuple[Any, ...]:
        """What changes whenever anything the charts draw changes: children counted by status, updates, epochs
        and the run's last write (cached charts are keyed by it)."""
        if not known_id(run_id):
            raise RunNotFound(f"no run {run_id} in store {self.label}")
        with self.read("stamp run") as conn:
            counts = _counts(conn, [run_id]).get(run_id, {})
            updated = conn.scalar(select(RUNS.c.updated_at).where(RUNS.c.id == run_id))
            n_updates = conn.scalar(select(func.count()).where(UPDATES.c.run_id == run_id))
        return (tuple(sorted(counts.items())), n_updates, iso(updated))

    # children -------------------------------------------------------------------------------------

    def rewards(self, run: RunRecord) -> tuple[list[tuple[int, int, float]], list[int]]:
        """(number, batch, reward) of every finished child with a reward in order (for a weight-sharing search, every
        architecture scored with its shared weights), and the failed children's numbers: only these columns,
        read from an index (migration 0006), not from the rows."""
        run_id = run.id
        # a weight-sharing search's chart is what its controller scored, as `l2l plot progress` draws it: not the
        # derive candidates nor the retraining
        which = CHILDREN.c.status == "shared" if run.config.get("weight_sharing") is not None else _rewarded(run)
        with self.read("read rewards") as conn:
            done = plain_rows(
                conn,
                select(CHILDREN.c.number, CHILDREN.c.batch, CHILDREN.c.reward)
                .where(CHILDREN.c.run_id == run_id, which, CHILDREN.c.reward.is_not(None))
                .order_by(CHILDREN.c.number),
            )
            failed = plain_rows(
                conn,
                select(CHILDREN.c.number)
                .where(CHILDREN.c.run_id == run_id, CHILDREN.c.status == "failed")
                .order_by(CHILDREN.c.number),
            )
        return done, [int(n) for (n,) in failed]

    def evaluations(self, run_id: int) -> list[tuple[int, tuple[int, ...], float]]:
        """(number, tokens, reward) of a plain run's finished children: what ranking its architectures by
        estimated mean needs (`l2l.runs.estimates.best_arch`)."""
        with self.read("read evaluations") as conn:  # tokens as the JSON text, each distinct one decoded once
            rows = plain_rows(
                conn,
                select(CHILDREN.c.number, type_coerce(CHILDREN.c.tokens, Text), CHILDREN.c.reward)
                .where(CHILDREN.c.run_id == run_id, CHILDREN.c.status == TRAINED[0], CHILDREN.c.reward.is_not(None))
                .order_by(CHILDREN.c.number),
            )
        tokens = decoder(lambda value: tuple(value or ()))
        with bulk():  # the driver's ints and floats as they are
            return [(n, tokens(t), r) for n, t, r in rows]

    def updates(self, run_id: int) -> list[tuple[int, float, float, float]]:
        """(policy version, loss, entropy, mean reward) of every controller update, oldest first."""
        with self.read("read updates") as conn:
            return plain_rows(
                conn,
                select(UPDATES.c.policy_version, UPDATES.c.loss, UPDATES.c.entropy, UPDATES.c.mean_reward)
                .where(UPDATES.c.run_id == run_id)
                .order_by(UPDATES.c.policy_version),
            )

    def learned(self, run_id: int) -> list[list[int]]:
        """The numbers of the children each controller update learned from, oldest update first (empty lists
        in a store written before updates named them)."""
        query = (
            select(type_coerce(UPDATES.c.extra, Text))
            .where(UPDATES.c.run_id == run_id)
            .order_by(UPDATES.c.policy_version)
        )
        numbers = decoder(lambda extra: [int(n) for n in ((extra or {}).get("children") or [])])
        with self.read("read updates") as conn, bulk():  # most updates' extras are alike: each text decoded once
            return [list(numbers(extra)) for (extra,) in plain_rows(conn, query)]

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        """The epochs of a weight-sharing search, in order."""
        with self.read("read epochs") as conn:
            rows = conn.execute(
                select(
                    EPOCHS.c.epoch,
                    EPOCHS.c.train_loss,
                    EPOCHS.c.train_steps,
                    EPOCHS.c.mean_reward,
                    EPOCHS.c.entropy,
                    EPOCHS.c.updates,
                    EPOCHS.c.wall_time,
                )
                .where(EPOCHS.c.run_id == run_id)
                .order_by(EPOCHS.c.epoch)
            ).mappings()
            return [dict(r) for r in rows]

    def cost_keys(self, run_id: int) -> list[str]:
        """The costs the run's newest finished child reports (flops, params, ...)."""
        with self.read("read cost names") as conn:
            metrics = conn.scalar(
                select(CHILDREN.c.metrics)
                .where(CHILDREN.c.run_id == run_id, CHILDREN.c.status == "done")
                .order_by(CHILDREN.c.number.desc())
                .limit(1)
            )
        cost = (metrics or {}).get("cost") if isinstance(metrics, dict) else None
        return sorted(k for k, v in (cost or {}).items() if isinstance(v, int | float)) if cost else []

    def costs(self, run_id: int, key: str) -> list[tuple[float, float, int]]:
        """(cost ``key``, accuracy, number) of every finished child that reports both; the cost is read with the
        database's JSON path operator, ``key`` bound as a parameter."""
        cost = CHILDREN.c.metrics[("cost", key)].as_float()
        acc = func.coalesce(CHILDREN.c.val_acc, CHILDREN.c.reward)
        with self.read("read costs") as conn, bulk():  # each row's JSON is read once: the nulls are dropped here
            done = CHILDREN.c.run_id == run_id, CHILDREN.c.status == "done"
            rows = plain_rows(conn, select(cost, acc, CHILDREN.c.number).where(*done))
            return [(c, a, n) for c, a, n in rows if c is not None and a is not None]

    def accurate(self, run_id: int) -> bool:
        """Whether some child of the run finished and every finished one has a validation accuracy (the Pareto
        chart then draws it, else the reward: `l2l.runs.plots.pareto_axis`)."""
        done = CHILDREN.c.status == "done"
        with self.read("count accuracies") as conn:
            n, with_acc = conn.execute(
                select(func.count(), func.count(CHILDREN.c.val_acc)).where(CHILDREN.c.run_id == run_id, done)
            ).one()
        return bool(n) and n == with_acc

    def page(
        self,
        run_id: int,
        *,
        page: int = 1,
        per: int = 50,
        sort: str = "number",
        descending: bool = False,
        status: str | None = None,
        text: str | None = None,
    ) -> tuple[int, int, list[dict[str, Any]]]:
        """One page of a run's children (how many match in all, the page the rows are of: past the last, the
        last, and the rows), sorted by a `SORT_KEYS` key, filtered by status and by text found in the spec,
        worker, device or error."""
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {sort!r}; known: {', '.join(SORT_KEYS)}")
        per = max(1, min(per, MAX_PER_PAGE))
        where = [CHILDREN.c.run_id == run_id]
        if status:
            where.append(CHILDREN.c.status == status)
        if text:
            where.append(
                or_(
                    spec_contains(sql_cast(CHILDREN.c.spec, Text), text),
                    CHILDREN.c.worker.contains(text, autoescape=True),
                    CHILDREN.c.device.contains(text, autoescape=True),
                    CHILDREN.c.error.contains(text, autoescape=True),
                )
            )
        key = SORT_KEYS[sort]  # children without a value (failed, queued) last either way, on every database
        ordered = key.desc() if descending else key.asc()
        # NULLS LAST, not "key IS NULL" first: that expression keeps the database from reading the page off an
        # index (the number order of 100,000 children sorted them all: 1.1 s a page, against 0.01)
        order = [ordered.nulls_last() if key.nullable else ordered, CHILDREN.c.number.asc()]
        with self.read("read children") as conn:
            total = int(conn.scalar(select(func.count()).select_from(CHILDREN).where(*where)) or 0)
            page = min(max(page, 1), max(1, -(-total // per)))  # past the last: the last, as the runs list
            rows = conn.execute(
                select(*ROW_COLUMNS).where(*where).order_by(*order).limit(per).offset((page - 1) * per)
            ).mappings()
            return total, page, [dict(r) for r in rows]

    def space_data(self, run_id: int) -> dict[str, Any]:
        """What the run's space measured when the run started (`SearchSpace.pinned_data`); empty when nothing."""
        if not self.has_space_data:
            return {}
        with self.read("read space data") as conn:
            return dict(conn.scalar(select(SPACE_DATA.c.data).where(SPACE_DATA.c.run_id == run_id)) or {})

    def child(self, run_id: int, number: int) -> ChildRecord:
        """Everything recorded of one child."""
        names = list(ChildRecord.__dataclass_fields__)
        if not known_id(run_id, number):
            raise RunNotFound(f"run {run_id} has no child {number}")
        with self.read("read child") as conn:
            row = (
                conn.execute(
                    select(*(CHILDREN.c[n] for n in names)).where(
                        CHILDREN.c.run_id == run_id, CHILDREN.c.number == number
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise RunNotFound(f"run {run_id} has no child {number}")
        values = dict(row)
        values["tokens"] = tuple(values["tokens"] or ())
        return ChildRecord(**values)

    def top(self, run: RunRecord, k: int, statuses: tuple[str, ...] | None = None) -> list[ChildRecord]:
        """The ``k`` children with the highest reward, best first: finished ones (and a weight-sharing search's
        scored architectures), or those of ``statuses``."""
        run_id = run.id
        which = _rewarded(run) if statuses is None else CHILDREN.c.status.in_(statuses)
        with self.read("read best children") as conn:
            numbers = conn.scalars(
                select(CHILDREN.c.number)
                .where(CHILDREN.c.run_id == run_id, which, CHILDREN.c.reward.is_not(None))
                .order_by(CHILDREN.c.reward.desc(), CHILDREN.c.number)
                .limit(k)
            ).all()
        return [self.child(run_id, int(n)) for n in numbers]


def _revision(conn: Connection) -> str | None:
    """The store's Alembic revision (None when it has no version table)."""
    from sqlalchemy import column, table

    value = conn.scalar(select(column("version_num")).select_from(table("alembic_version")))
    return None if value is None else str(value)


def _rewarded(run: RunRecord) -> Any:
    """Which of a run's children have a reward to draw: trained ones; for a weight-sharing search also those
    scored with its shared weights. A plain equality for plain runs, which the index answers in child order."""
    if run.config.get("weight_sharing") is not None:
        return CHILDREN.c.status.in_(SCORED)
    return CHILDREN.c.status == TRAINED[0]


def _counts(conn: Connection, run_ids: list[int]) -> dict[int, dict[str, int]]:
    rows = conn.execute(
        select(CHILDREN.c.run_id, CHILDREN.c.status, func.count())
        .where(CHILDREN.c.run_id.in_(run_ids))
        .group_by(CHILDREN.c.run_id, CHILDREN.c.status)
    ).all()
    out: dict[int, dict[str, int]] = {}
    for run_id, status, n in rows:
        out.setdefault(int(run_id), {})[str(status)] = int(n)
    return out
