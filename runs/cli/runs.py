"""`l2l runs list|show|top|best|export`: inspect, retrain and export recorded runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from l2l.controllers.names import split_name
from l2l.runs.cli.common import (
    RunArg,
    StorageOpt,
    console,
    first_line,
    most_common_failure,
    open_store,
    run_id_of,
    shown_name,
    space_of,
    storage_flag,
    user_errors,
)
from l2l.runs.cli.export import export_csv, export_json, format_of
from l2l.runs.cli.formatting import (
    MetricView,
    describe_child,
    fmt,
    joined,
    parameter_free,
    placement_line,
    pruned_at,
    pruned_mark,
    pruned_note,
)
from l2l.runs.cli.ranking import (
    ByOpt,
    check_by,
    estimate_text,
    mean_metrics,
    ranked_space,
    sharing_role,
    sharing_top,
    transform_note,
)
from l2l.runs.cli.retraining import budget_space, check_writable, record_retrained, retrain_budget, retrain_child
from l2l.runs.config import UsageError, settings_shown
from l2l.runs.store_records import MAX_ID

if TYPE_CHECKING:
    from l2l.runs.store import RunRecord, Store

app = typer.Typer(help="Inspect and export recorded runs.", no_args_is_help=True)
RETRAIN_SEED = "Seed of the retraining (default: the child's own, as it trained)."


@app.command("show")
def runs_show(
    run_ref: RunArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Refresh until the run stops running.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.", min=0.1)] = 2.0,
    storage: StorageOpt = None,
) -> None:
    """Show a run's settings, progress, best child and latest controller statistics."""
    import json

    with user_errors():
        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        if not follow:
            for line in run_lines(store, run_id):
                console.print(line, highlight=False)
            config = settings_shown(store.get_run(run_id).config)
            console.print("config: " + json.dumps(config, sort_keys=True), highlight=False, markup=False)
            return
        from l2l.runs.cli.progress import follow as follow_lines
        from l2l.runs.driver import run_state

        def running() -> bool:  # not a run whose driver is gone
            return run_state(store.get_run(run_id)) == "running"

        follow_lines(lambda: run_lines(store, run_id, latest=5), running, interval)


def say_notes(*notes: str | None) -> None:
    """The notes under a table, each on a line of its own; those that are None say nothing."""
    for note in notes:
        if note:
            console.print(f"[yellow]note:[/] {note}", highlight=False)


def sharing_epochs(run: RunRecord) -> int:
    """The epochs a weight-sharing run was set to train."""
    from l2l.runs.sharing_config import SharingConfig

    return int((run.config.get("weight_sharing") or {}).get("epochs", SharingConfig.epochs))


def nothing_to_name(store: Store, run: RunRecord) -> UsageError:
    """Why a run has no best child: a weight-sharing run has derived none yet, every child failed (the run is
    over), or none has finished yet."""
    if run.config.get("weight_sharing") is not None:  # it derives after its last epoch; `runs top` lists the scored
        again = "" if run.status == "running" else f"; `l2l search --resume {run.id}{storage_flag(store)}` continues it"
        return UsageError(f"run {run.id} has no derived child yet (it derives one after its last epoch{again})")
    failed = store.count_children(run.id)["failed"]
    if failed and run.status in ("done", "failed"):
        return UsageError(
            f"no child of run {run.id} succeeded ({failed} failed; each one's reason: `l2l runs child {run.id} N`)"
        )
    return UsageError(f"run {run.id} has no finished child yet")


def sharing_line(store: Store, run: RunRecord, counts: dict[str, int]) -> str:
    """What a weight-sharing run has done: epochs, architectures scored with shared weights, the derived one."""
    epochs = store.epochs(run.id)
    total = sharing_epochs(run)
    line = f"weight sharing: {len(epochs)} of {total} epochs, {counts.get('shared', 0)} architectures scored"
    if epochs:
        line += f", shared loss {epochs[-1].train_loss:.3f}"
    derived = store.children(run.id, "derived")
    if derived:
        share = parameter_free(derived[0])
        line += f"; derived child {derived[0].number} (reward {fmt(derived[0].reward)} with shared weights"
        line += f", {share})" if share else ")"
        if counts["done"]:
            n = counts["done"]
            line += ", retrained once" if n == 1 else f", retrained {n} times"
    return line


def run_lines(store: Store, run_id: int, latest: int = 0) -> list[str]:
    """The summary of a run, as Rich markup lines (and its ``latest`` finished children)."""
    from l2l.runs.driver import in_flight, run_state

    run = store.get_run(run_id)
    counts = store.count_children(run_id)
    top = store.top_children(run_id, 1)
    updates = store.updates(run_id)
    ranking = None
    if top and run.config.get("weight_sharing") is None:
        from l2l.runs.estimates import rank

        ranking = rank(store.children(run_id), ranked_space(run))
    state = run_state(run, storage=storage_flag(store))
    lines = [
        f"[bold]run {run.id}[/] {escape(shown_name(run.name))}  status: {escape(state)}",
        f"space {run.space}, strategy {run.strategy}, seed {run.seed}, code {run.code_version}",
        f"created {run.created_at:%Y-%m-%d %H:%M:%S}, "
        f"finished {f'{run.finished_at:%Y-%m-%d %H:%M:%S}' if run.finished_at else '-'}"
        + (f", driven by {run.driver}" if run.driver else ""),  # host:pid: on a shared store, where it ran
        f"children: {counts['done']} done, {counts['failed']} failed, {in_flight(run, counts['running'], state)}, "
        f"{counts['queued']} queued, of {run.n_children}",
    ]
    pruned = sum(pruned_at(c) is not None for c in store.children(run_id, "done")) if run.config.get("pruner") else 0
    if pruned:
        lines[-1] += f"; {pruned} of the done stopped early by the {run.config['pruner']} pruner"
    if run.config.get("weight_sharing") is not None:
        lines[-1] = sharing_line(store, run, counts)
    if run.error:
        lines.append(f"[red]error:[/] {run.error}")
    if counts["failed"]:  # the most common reason here; one child's whole traceback is a command away
        failed = store.children(run_id, "failed")
        reason, n, at = most_common_failure(c.error for c in failed)
        lines.append(
            f"failures: {n} of {counts['failed']}: {escape(reason)}; each one's record and traceback: "
            f"`l2l runs child {run.id} {failed[at].number}{storage_flag(store)}`"
        )
    placement = placement_line(store.children(run_id))
    if placement:
        lines.append(placement)
    if ranking is not None and ranking.archs[0].estimate.n > 1:
        arch = ranking.archs[0]
        lines.append(
            f"best: child {arch.child.number}, estimated reward {estimate_text(arch)} over {arch.estimate.n} "
            f"evaluations: {describe_child(run, arch.child)}"
        )
    elif ranking is not None:  # evaluated once: its reward, and the estimate `runs list` and `runs best` show
        best, e = ranking.archs[0].child, ranking.archs[0].estimate
        once = "" if e.estimate == best.reward else f", estimated {e.estimate:.4f} (evaluated once)"
        lines.append(f"best: child {best.number}, reward {best.reward:.4f}{once}: {describe_child(run, best)}")
    elif top:
        best = top[0]
        lines.append(f"best: child {best.number}, reward {best.reward:.4f}: {describe_child(run, best)}")
    if updates:
        u = updates[-1]
        lines.append(
            f"controller: {len(updates)} updates, last mean reward {u.mean_reward:.4f}, "
            f"entropy {f'{u.entropy:.3f}' if any(x.entropy for x in updates) else '- (the strategy has no policy)'}, "
            f"baseline {fmt(u.baseline)}"
        )
    if latest:
        finished = [c for c in store.children(run_id) if c.finished_at is not None]
        for c in sorted(finished, key=lambda c: c.finished_at)[-latest:]:  # type: ignore[arg-type, return-value]
            where = f"{c.worker or ''} {c.device or ''}{f' node {c.node[:8]}' if c.node else ''}".strip()
            lines.append(f"  child {c.number} {c.status} reward {fmt(c.reward)}" + (f" on {where}" if where else ""))
    return lines


@app.command("top")
def runs_top(
    run_ref: RunArg,
    k: Annotated[
        int, typer.Option("-k", help="How many architectures (children with --by single).", min=1, max=MAX_ID)
    ] = 10,
    by: ByOpt = "mean",
    storage: StorageOpt = None,
) -> None:
    """The best architectures of a run by estimated mean reward (with --by single: children by reward)."""
    from rich.table import Table

    from l2l.runs.estimates import rank

    with user_errors():
        check_by(by)
        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        sharing = run.config.get("weight_sharing") is not None
        if by != "single" and not sharing:
            ranking = rank(store.children(run_id), ranked_space(run), transformed=by == "transformed")
            archs = ranking.archs[:k]
            if not archs:  # an empty table would say nothing; runs best says the same
                raise nothing_to_name(store, run)
            top = [a.child for a in archs]
            view = MetricView.of(run.space, top)
            tests, costs = view.test[:3], view.cost[:2]
            estimate = "estimate ± 95%" + (" (transformed)" if by == "transformed" else "")
            table = Table("rank", "child", "n", estimate, *view.val_column(), *tests, *costs, "candidate")
            for place, arch in enumerate(archs, start=1):
                metrics = mean_metrics(arch.children)
                table.add_row(
                    str(place),
                    ",".join(f"{c.number}{pruned_mark(c)}" for c in arch.children[:4])
                    + ("..." if len(arch.children) > 4 else ""),
                    str(arch.estimate.n),
                    estimate_text(arch),
                    *([view.val(metrics, metrics.get("val_acc"), metrics.get("val_loss"))] if view.validation else []),
                    *(view.figure(metrics, "test", key) for key in tests),
                    *(view.figure(metrics, "cost", key) for key in costs),
                    describe_child(run, arch.child),
                )
            console.print(table)
            shown = [c for a in archs for c in a.children[:4]]  # the children the table lists
            say_notes(ranking.doubt(split_name(run.strategy)[2]), transform_note(run, by), pruned_note(shown))
            return
        top = sharing_top(store, run_id, k) if sharing else store.top_children(run_id, k)
        if not top:
            raise nothing_to_name(store, run)
        view = MetricView.of(run.space, top)
        tests, costs = view.test[:3], view.cost[:2]  # the first declared (or found) ones: a table stays readable
        role, retrained = (["role"], store.children(run_id, "done")) if sharing else ([], [])
        table = Table("rank", "child", *role, "reward", *view.val_column(), *tests, *costs, "candidate")
        for place, c in enumerate(top, start=1):
            table.add_row(
                str(place),
                f"{c.number}{pruned_mark(c)}",
                *([sharing_role(c, retrained)] if sharing else []),
                fmt(c.reward) + (" shared" if sharing and c.status != "done" else ""),
                *([view.val(c.metrics, c.val_acc, c.val_loss)] if view.validation else []),
                *(view.figure(c.metrics, "test", key) for key in tests),
                *(view.figure(c.metrics, "cost", key) for key in costs),
                describe_child(run, c),
            )
        console.print(table)
        say_notes(pruned_note(top))


@app.command("best")
def runs_best(
    run_ref: RunArg,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the best child again from its spec.")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs of the retraining.", min=1)] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Training steps of the retraining (language models).", min=1)
    ] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device of the retraining.")] = "cpu",
    seed: Annotated[int | None, typer.Option("--seed", help=RETRAIN_SEED, min=0, max=MAX_ID)] = None,
    by: ByOpt = "mean",
    storage: StorageOpt = None,
) -> None:
    """The best architecture of a run by estimated mean reward over its evaluations (--by single: the child
    with the highest reward); with --retrain, train it again from its stored spec (e.g. longer) and report
    its validation and test figures (those its space declares: accuracy, bits per character, perplexity)."""
    from l2l.runs.estimates import rank

    with user_errors():
        check_by(by)
        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        sharing = run.config.get("weight_sharing") is not None
        if not retrain and (epochs is not None or steps is not None):  # before any output: nothing was done
            raise UsageError("--epochs and --steps are the budget of a retraining: add --retrain")
        budget: dict[str, int] = {}
        asked: dict[str, int] = {}  # the budget given (--epochs, --steps), recorded with a weight-sharing retraining
        if retrain:  # the space trains it again; naming the best reads the store (a plugin gone, or moved, too)
            from l2l.runs.executors import check_device

            space = space_of(run, store)
            budget = asked = retrain_budget(space, run.space, epochs, steps, run_id=run_id)
            check_device(device)
            space, budget = budget_space(space, run, store, budget)
        if by != "single" and not sharing:
            ranking = rank(
                store.children(run_id), space if retrain else ranked_space(run), transformed=by == "transformed"
            )
            if not ranking.archs:
                raise nothing_to_name(store, run)
            arch = ranking.archs[0]
            best = arch.child
            view = MetricView.of(run.space, [best])
            metrics = mean_metrics(arch.children)
            what = "transformed reward" if by == "transformed" else "reward"
            once = best.controller_reward if by == "transformed" else best.reward
            evaluated = (
                f"evaluated {arch.estimate.n} times (children {', '.join(str(c.number) for c in arch.children)}), "
                f"estimated {what} {estimate_text(arch)} (95%)"
                if arch.estimate.n > 1
                else f"child {best.number}, {what} {fmt(once)}"
                + ("" if arch.estimate.estimate == once else f", estimated {estimate_text(arch)} (evaluated once)")
            )
            console.print(
                f"best of run {run_id}: {joined(evaluated, *view.summaries(metrics))}: {describe_child(run, best)}",
                highlight=False,
            )
            say_notes(ranking.doubt(split_name(run.strategy)[2]), transform_note(run, by))
        else:
            top = store.children(run_id, "derived") if sharing else store.top_children(run_id, 1)
            if not top:
                raise nothing_to_name(store, run)
            best = top[0]
            view = MetricView.of(run.space, top)
            head = f"child {best.number}, reward {fmt(best.reward)}" + (" with shared weights" if sharing else "")
            share = parameter_free(best) if sharing else None
            head += f" ({share})" if share else ""
            console.print(
                f"best of run {run_id}: {joined(head, *view.summaries(best.metrics))}: {describe_child(run, best)}",
                highlight=False,
            )
            if sharing:  # the derived architecture's honest numbers, where it was retrained
                for again in store.children(run_id, "done"):
                    figures = joined(f"reward {fmt(again.reward)}", view.summary(again.metrics))
                    console.print(f"  retrained as child {again.number}: {figures}", highlight=False)
        if not retrain:
            return
        if sharing:  # before the training, not after it (minutes, then an error)
            check_writable(store, run_id)
        with console.status(f"retraining child {best.number}..."):
            from l2l.runs.search import child_seed

            used = child_seed(run.seed, best.number) if seed is None else seed
            result = retrain_child(space, best, budget, seed=used, device=device)
        if result.status != "done":
            raise UsageError(f"retraining child {best.number} failed: {first_line(result.error)}")
        metrics = result.to_json()
        told = [f"{n} {unit}{'s' * (n != 1)}" for n, unit in ((epochs, "epoch"), (steps, "step")) if n]
        length = f" for {' of at most '.join(told)}" if told else ""  # both: epochs cut at --steps (word_lm)
        done = f"retrained{length}"
        if space.exact_rewards():  # a table lookup or a simulation: nothing trains, a budget changes nothing
            ignored = ", --epochs/--steps ignored" if length else ""
            done = f"evaluated again (space {run.space!r} has exact rewards: nothing was trained{ignored})"
        value = view.val(metrics, result.val_acc, result.val_loss)
        shown = f"validation {view.validation or 'acc'} {value}" if value != "-" else f"reward {fmt(result.reward)}"
        own = f" (child {best.number}'s own)" if seed is None else ""
        console.print(f"{done}: {joined(shown, *view.summaries(metrics))}; seed {used}{own}", highlight=False)
        if sharing:  # the honest number of a weight-sharing search: kept with the run
            number = record_retrained(store, run_id, best, result, asked, used)
            console.print(f"recorded as child {number} of run {run_id}", highlight=False)


@app.command("export")
def runs_export(
    run_ref: RunArg,
    export_format: Annotated[
        str | None, typer.Option("--format", help="csv or json (default: the --output file's suffix, else csv).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default or -: stdout).")] = None,
    storage: StorageOpt = None,
) -> None:
    """Export every child of a run (and, in JSON, the run and its controller updates)."""
    output = None if output == Path("-") else output  # the usual name of stdout
    with user_errors():
        export_format = format_of(output, export_format)
        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        children = store.children(run_id)
        if export_format == "json":
            text = export_json(run, children, store.updates(run_id), store.epochs(run_id))
        else:
            view = MetricView.of(run.space, children)
            text = export_csv(children, view.test, view.cost, view.validation)
        if output is None:
            sys.stdout.write(text)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
            console.print(f"wrote {len(children)} children to {output}", highlight=False)
