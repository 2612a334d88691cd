"""`l2l db`: a store's schema (status, upgrade) and copying its runs to another store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from l2l.runs.cli.common import StorageOpt, console, err_console, open_store, run_id_of, user_errors
from l2l.runs.config import UsageError

if TYPE_CHECKING:
    from l2l.runs.store import Store

app = typer.Typer(help="The results store itself: its schema, and copying runs to another store.", no_args_is_help=True)

ToOpt = Annotated[
    str, typer.Option("--to", help="SQLAlchemy URL of the store to copy into (created or upgraded if need be).")
]
RunsArg = Annotated[
    list[str] | None, typer.Argument(metavar="[RUN]...", help="Runs to copy, by id or name \\[default: every run].")
]


@app.command("status")
def db_status(storage: StorageOpt = None) -> None:
    """Say which schema revision the store is at against this l2l's, and how many runs it holds; changes nothing
    (every other command upgrades an older store it opens)."""
    from sqlalchemy import text

    from l2l.runs.store_engine import schema_head, schema_revisions

    with user_errors():
        store = open_store(storage, migrate=False)
        revision, head = store.schema_revision(), schema_head()
        console.print(f"store: {escape(store.label)} ({store.engine.dialect.name})", highlight=False)
        if revision is None:
            console.print("schema: none (no l2l tables yet: a search creates them)", highlight=False)
            return
        if revision == head:
            said = f"revision {revision}, this l2l's"
        elif revision in schema_revisions():
            said = (
                f"revision {revision}, older than this l2l's {head}: `l2l db upgrade` upgrades it, as any other "
                "command of this l2l that opens it would; one way (an older l2l cannot open it after)"
            )
        else:
            said = f"revision {revision}, written by a newer l2l (this one is at {head}): upgrade l2l to use it"
        console.print(f"schema: {said}", highlight=False)
        if revision not in schema_revisions():
            return
        with store.connection_scope("count runs") as conn:  # every revision has the runs table and its status
            counts: dict[str, int] = dict(conn.execute(text("SELECT status, COUNT(*) FROM runs GROUP BY status")).all())
        if revision == head and counts.get("running"):  # as `runs list` says them: a run whose driver is gone is stale
            stale = stale_runs(store)
            counts = {**counts, "running": counts["running"] - stale, "stale": stale}
            counts = {k: n for k, n in counts.items() if n}
        shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        console.print(f"runs: {sum(counts.values())}{f' ({shown})' if shown else ''}", highlight=False)
        if store.read_only is not None:
            console.print(f"read-only here: {escape(store.read_only)}", highlight=False)


@app.command("upgrade")
def db_upgrade(storage: StorageOpt = None) -> None:
    """Upgrade the store's schema to this l2l's (what any command that opens it does); one way."""
    from l2l.runs.store_engine import schema_head

    with user_errors():
        store = open_store(storage)  # says so when it upgraded
        if store.upgraded_from is None:
            console.print(
                f"store {escape(store.label)} is at schema revision {schema_head()}, this l2l's: nothing to do"
            )


@app.command("copy")
def db_copy(runs: RunsArg = None, to: ToOpt = "", storage: StorageOpt = None) -> None:
    """Copy runs (every run by default) of the store into another one, e.g. a SQLite file into a shared PostgreSQL
    database: each run whole (children, controller updates, checkpoint, epochs) under a new id there. The source is
    only read (an older SQLite store through an upgraded snapshot); a run still running is left out, and a run the
    target holds from an earlier copy is skipped."""
    from l2l.runs.store_copy import checked_ids, readable

    with user_errors():
        if not to:
            raise UsageError("l2l db copy needs --to URL: the store to copy into")
        with readable(open_store(storage, migrate=False)) as source:
            ids = None if not runs else checked_ids(source, [run_id_of(source, ref) for ref in runs])
            target = open_store(to, create=True)  # after the runs are known: a wrong one leaves no new store
            _copy(source, target, ids)


def _copy(source: Store, target: Store, ids: list[int] | None) -> None:
    """Copy ``ids`` (None: every run) and say what became of each."""
    from l2l.runs.store_copy import RUNNING, copy_runs

    copied = skipped = running = 0
    for done in copy_runs(source, target, ids):
        if done.skipped is not None:
            skipped += 1
            running += done.skipped == RUNNING
            err_console.print(f"[yellow]run {done.source_id}: not copied, {escape(done.skipped)}[/]", highlight=False)
            continue
        copied += 1
        what = ", ".join(f"{n:,} {label}" if label != "space data" else label for label, n in done.rows.items())
        console.print(f"run {done.source_id} -> run {done.target_id}: {what or 'no rows'}", highlight=False)
    tail = f"; {skipped} not copied (above)" if skipped else ""
    console.print(f"copied {copied} run(s) to {escape(target.label)}{tail}", highlight=False)
    if ids is not None and running:  # a run asked for by name that is not there: a script must be able to tell
        raise typer.Exit(1)


def stale_runs(store: Store) -> int:
    """How many runs recorded as running have a driver that is gone."""
    from sqlalchemy import select

    from l2l.runs.driver import run_state
    from l2l.runs.models import RunRow
    from l2l.runs.store_records import RunRecord, record_from_row

    with store.session_scope("read running runs") as s:
        rows = s.scalars(select(RunRow).where(RunRow.status == "running")).all()
        return sum(run_state(record_from_row(RunRecord, r)) != "running" for r in rows)
