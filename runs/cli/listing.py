"""`l2l runs list` (filtered by status, space or name) and `l2l runs delete`: the runs of a store, as a team
sharing one sees them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from l2l.runs.cli.common import (
    StorageOpt,
    console,
    open_store,
    run_id_of,
    shown_name,
    storage_flag,
    user_errors,
)
from l2l.runs.cli.formatting import fmt
from l2l.runs.cli.ranking import ranked_space
from l2l.runs.cli.runs import app, sharing_epochs
from l2l.runs.config import UsageError
from l2l.runs.store_records import MAX_ID
from l2l.search_spaces.registry import absolute_ref

STATES = ("running", "stale", "done", "failed", "interrupted")  # what the status column says, first word


@app.command("list")
def runs_list(
    storage: StorageOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="How many runs, newest first.", min=1, max=MAX_ID)] = 20,
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only runs in this state: {', '.join(STATES)}.")
    ] = None,
    space: Annotated[str | None, typer.Option("--space", help="Only runs of this search space.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only runs whose name contains this text.")] = None,
) -> None:
    """List recorded runs, newest first; with filters, the newest that match."""
    from rich.markup import escape
    from rich.table import Table

    from l2l.runs.driver import run_state
    from l2l.runs.estimates import best_estimate

    with user_errors():
        if status is not None and status not in STATES:
            raise UsageError(f"unknown status {status!r}; known: {', '.join(STATES)}")
        store = open_store(storage)
        flag = storage_flag(store)
        filtered = status is not None or space is not None or name is not None
        space = absolute_ref(space) if space is not None else None  # a file plugin's path, as the run stored it
        shown = []  # every match where a filter picks among the runs; one more than shown tells of older ones
        for r in store.list_runs(100_000 if filtered else limit + 1):
            state = run_state(r, storage=flag)
            keep = (status is None or state.split(" ")[0] == status) and (space is None or r.space == space)
            if keep and (name is None or name in (r.name or "")):
                shown.append((r, state))
        older, shown = len(shown) - limit, shown[:limit]
        if filtered and not shown:
            console.print("no run matches", highlight=False)
            return
        table = Table("run", "name", "space", "strategy", "status", "children", "failed", "best", "created")
        told = [f"run {r.id} is {state}" for r, state in shown if " (" in state]  # below the table, not in a column
        for r, state in shown:
            counts = store.count_children(r.id)
            top = store.top_children(r.id, 1)
            size, best = f"{counts['done'] + counts['failed']}/{r.n_children}", fmt(top[0].reward) if top else "-"
            if top and r.config.get("weight_sharing") is None:  # the best estimated mean, as `runs best` names it
                best = fmt(best_estimate(store.rewards(r.id), ranked_space(r)))
            if r.config.get("weight_sharing") is not None:  # epochs, and the derived child's (shared) reward
                size = f"{len(store.epochs(r.id))}/{sharing_epochs(r)} epochs"
                derived = store.children(r.id, "derived")
                best = best if top else f"{fmt(derived[0].reward)} shared" if derived else "-"
            row = [
                str(r.id),
                escape(shown_name(r.name)),
                r.space,
                r.strategy,
                state.split(" (")[0],
                size,
                str(counts["failed"]),
                best,
            ]
            table.add_row(*row, r.created_at.strftime("%Y-%m-%d %H:%M"))
        console.print(table if shown else "no runs in this store yet", highlight=False)
        for line in told:
            console.print(escape(line), highlight=False, soft_wrap=True)
        if older > 0:  # not a silent cut
            which = f"of the {limit + older} runs that match" if filtered else "runs" if limit > 1 else "run"
            newest = f"the newest {limit}" if limit > 1 or filtered else "the newest"
            console.print(f"{newest} {which}; older ones: --limit N", highlight=False)


@app.command("delete")
def runs_delete(
    run_refs: Annotated[list[str], typer.Argument(metavar="RUN...", help="The runs to delete (ids or names).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    storage: StorageOpt = None,
) -> None:
    """Delete runs and everything recorded for them (children, updates, checkpoints, epochs); a run that a live
    process drives is refused (stop it first)."""
    from l2l.runs.driver import live_driver

    with user_errors():
        store = open_store(storage)
        ids = [run_id_of(store, r) for r in run_refs]
        runs = [store.get_run(r) for r in dict.fromkeys(ids)]  # every run checked before anything goes
        for run in runs:
            alive = live_driver(run)
            if alive is not None:
                raise UsageError(f"run {run.id} is running: {alive}")
        what = ", ".join(f"{r.id} ({r.space}, {store.count_children(r.id)['done']} done)" for r in runs)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"deleting run(s) {what} cannot be undone: add --yes to confirm")
            typer.confirm(f"delete run(s) {what}? This cannot be undone", abort=True)
        for run in runs:
            store.delete_run(run.id)
        console.print(f"deleted run(s) {what}", highlight=False)
