"""`l2l runs child RUN NUMBER`: one child as recorded, with a failure's whole traceback."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from l2l.runs.cli.common import RunArg, StorageOpt, console, open_store, run_id_of, user_errors
from l2l.runs.cli.formatting import MetricView, describe_child, fmt
from l2l.runs.cli.runs import app
from l2l.runs.config import UsageError
from l2l.runs.store_records import MAX_ID


def child_lines(run: Any, child: Any) -> list[str]:
    """What `runs child` prints of ``child`` of ``run``: plain text lines (no Rich markup)."""
    view = MetricView.of(run.space, [child])
    info = child.metrics.get("info") or {}
    if info.get("retrained_from") is not None:  # a weight-sharing run's derived architecture trained from scratch
        budget = "".join(f", {k} {v}" for k, v in (info.get("retrained_with") or {}).items())
        origin = f"retrained from scratch: child {info['retrained_from']}{budget}"
    else:
        origin = "scored in the derive phase" if child.batch < 0 else f"batch {child.batch}"
    out = [
        f"child {child.number} of run {run.id}: {child.status}, {origin}, attempts {child.attempts}",
        f"architecture: {describe_child(run, child, plain=True)}",  # these lines are printed without markup
        f"tokens: {list(child.tokens)}",
    ]
    if child.status == "done":
        validation = view.val(child.metrics, child.val_acc, child.val_loss)
        figures = [f"reward {fmt(child.reward)}", f"learned from {fmt(child.controller_reward)}"]
        figures += [f"validation {view.validation or 'acc'} {validation}"] if validation != "-" else []
        out.append(", ".join(f for f in (*figures, *view.summaries(child.metrics)) if f))
    ran = [f"worker {child.worker}"] if child.worker else []
    ran += [f"device {child.device}"] if child.device else []
    ran += [f"node {child.node[:8]}"] if child.node else []
    ran += [f"{child.wall_time:.2f} s"] if child.wall_time is not None else []
    if ran:
        out.append("ran: " + ", ".join(ran))
    notice = (child.metrics.get("runtime") or {}).get("notice")  # e.g. a GPU reserved that torch could not use
    if isinstance(notice, str) and notice:
        out.append(f"note: {notice}")
    info = child.metrics.get("info") or {}
    if info:
        out.append("info: " + json.dumps(info, sort_keys=True, default=str))
    for name, curve in (child.curves or {}).items():
        points = [fmt(v) for v in curve[-8:]]
        out.append(f"curve {name} ({len(curve)} points): {'... ' if len(curve) > 8 else ''}{' '.join(points)}")
    if child.error:
        out += ["error:", *child.error.rstrip().splitlines()]
    return out


@app.command("child")
def runs_child(
    run_ref: RunArg,
    number: Annotated[int, typer.Argument(metavar="NUMBER", help="The child's number in its run.", min=0, max=MAX_ID)],
    storage: StorageOpt = None,
) -> None:
    """One child as recorded: its architecture, figures, where it ran, its curves, and a failure's traceback."""
    with user_errors():
        store = open_store(storage)
        run = store.get_run(run_id_of(store, run_ref))
        found = store.child(run.id, number)  # one row, not the run's every child
        if found is None:
            total = sum(store.count_children(run.id).values())
            held = f"its children are numbered 0 to {total - 1}" if total else "it has no children yet"
            raise UsageError(f"run {run.id} has no child {number} ({held})")
        for line in child_lines(run, found):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
