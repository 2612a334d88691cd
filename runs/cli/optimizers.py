"""`l2l optimizers top|export|evaluate`: the update rules an optimizer search found, and the scoreboard."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from l2l.runs.cli.common import (
    RunArg,
    StorageOpt,
    check_writable,
    console,
    err_console,
    open_store,
    run_id_of,
    user_errors,
)
from l2l.runs.cli.formatting import fmt
from l2l.runs.config import UsageError
from l2l.runs.store_records import MAX_ID

if TYPE_CHECKING:
    from l2l.optsearch.language import Rule
    from l2l.optsearch.tuning import Contender
    from l2l.runs.store import ChildRecord, Store

app = typer.Typer(help="The update rules an optimizer search found.", no_args_is_help=True)


def best_rules(store: Store, run_id: int, k: int) -> list[tuple[ChildRecord, Rule]]:
    """The ``k`` best distinct rules of an optimizer-search run, with the best child that wrote each."""
    from l2l.search_spaces import SpaceError, Spec, load_space

    run = store.get_run(run_id)
    options = dict(run.config.get("space_options") or {})
    try:
        space = load_space(run.space, options, validate=False)
    except SpaceError as exc:
        try:  # a plugin task gone: the rules read without the suite (where that is what failed)
            if run.space != "optimizer" or "suite" not in options:
                raise
            space = load_space(run.space, {k: v for k, v in options.items() if k != "suite"}, validate=False)
            console.print(f"[yellow]note:[/] run {run_id}'s suite cannot be loaded now ({escape(str(exc))})")
        except SpaceError:
            hint = "" if run.space == "optimizer" else "; `l2l optimizers` reads runs of the optimizer space"
            raise UsageError(f"cannot rebuild the space {run.space!r} of run {run_id}: {exc}{hint}") from None
    rule_of = getattr(space, "rule_of", None)
    if rule_of is None:
        raise UsageError(f"run {run_id} searched the space {run.space!r}, not optimizer rules (use --space optimizer)")
    from l2l.optsearch.simplify import functional_hash

    children = store.top_children(run_id, 10 * k)
    if not children:
        raise UsageError(f"run {run_id} has no finished child yet")
    out: list[tuple[ChildRecord, Rule]] = []
    seen: set[str] = set()
    for c in children:  # rules that compute the same update (dead tokens, x * 1, ...) are one rule
        rule = rule_of(Spec.from_json(c.spec))
        key = functional_hash(rule)
        if key not in seen and len(out) < k:
            seen.add(key)
            out.append((c, rule))
    return out


def suite_warnings(space: Any) -> list[str]:
    """What `l2l search` says before an optimizer search: a broken task plugin whose tasks are left out (the
    run's suite does not hold them, or the space would have refused it), and held-out tasks in the reward."""
    from l2l.optsearch.suite import plugin_problems

    broken = plugin_problems() if space.suite is not None else []  # a one-task search reads no task plugin
    said = [f"{problem}; its tasks are left out" for problem in broken]
    held = space.heldout_tasks()
    if held:  # the user's choice, but the scoreboard's held-out tasks are no longer held out after it
        said.append(
            f"this search scores rules on held-out task(s) {', '.join(held)}; a rule chosen on them says nothing "
            "about transfer there (docs/optimizer-search.md)"
        )
    return said


def suite_figures(info: dict[str, Any], grid: Sequence[float] = ()) -> tuple[str, str]:
    """A suite-scored rule's geometric mean loss ratio to tuned Adam and its tuned lr per task it ran (``!``
    where that is the first or last rate of the run's ``grid``, as `optimizers evaluate` marks it)."""
    tasks = info.get("tasks") or {}
    ratios = [float(t["ratio"]) for t in tasks.values() if t.get("ratio") is not None]
    ratio = fmt(math.exp(sum(math.log(r) for r in ratios) / len(ratios))) if ratios else "-"
    edges = (min(grid), max(grid)) if grid else ()
    lrs = ", ".join(
        f"{name} {t['lr']:g}{'!' if t['lr'] in edges else ''}" for name, t in tasks.items() if t.get("lr") is not None
    )
    stopped = f" (stopped at {info['stopped_at']})" if info.get("stopped_at") else ""
    return ratio, (lrs or "-") + stopped


def run_grid(config: dict[str, Any]) -> tuple[float, ...]:
    """The learning rates an optimizer run tuned each rule over: its ``lrs`` option, else the default grid."""
    from l2l.optsearch.tuning import LR_GRID
    from l2l.runs.cli.plot import parse_lrs  # (plot imports this module)

    lrs = (config.get("space_options") or {}).get("lrs")
    return parse_lrs(str(lrs) if lrs else None, tuple(LR_GRID))


def single_figures(metrics: dict[str, Any], info: dict[str, Any]) -> tuple[str, str]:
    """A one-task rule's test accuracy and best learning rate."""
    return fmt((metrics.get("test") or {}).get("test_acc")), f"{info['best_lr']:g}" if "best_lr" in info else "-"


@app.command("top")
def optimizers_top(
    run_ref: RunArg,
    k: Annotated[int, typer.Option("-k", help="How many rules.", min=1, max=MAX_ID)] = 5,
    latex: Annotated[
        bool, typer.Option("--latex", help="Also print each formula as LaTeX, one line per rule.")
    ] = False,
    storage: StorageOpt = None,
) -> None:
    """The best rules of a run as formulas, with their rewards."""
    from rich.table import Table

    from l2l.optsearch.language import to_formula, to_latex, to_text
    from l2l.optsearch.simplify import simplified_rule

    with user_errors():
        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        rules = best_rules(store, run_id, k)
        suite = any("tasks" in (c.metrics.get("info") or {}) for c, _ in rules)  # a suite reward: lr per task
        grid = run_grid(store.get_run(run_id).config)
        figures = ("loss ratio to Adam", "lr per task") if suite else ("test acc", "best lr")
        table = Table("rank", "child", "reward", *figures, "update (simplified)", "rule")
        shown = []
        for rank, (c, rule) in enumerate(rules, start=1):
            info = c.metrics.get("info") or {}
            shown.append(suite_figures(info, grid) if suite else single_figures(c.metrics, info))
            table.add_row(
                str(rank), str(c.number), fmt(c.reward), *shown[-1], to_formula(simplified_rule(rule)), to_text(rule)
            )
        console.print(table)
        if suite and any("!" in lrs for _, lrs in shown):
            console.print("! : the tuned rate is at the edge of the run's grid (the best may lie beyond it)")
        for rank, (_, rule) in enumerate(rules if latex else [], start=1):  # whole lines: a cell would cut them
            console.print(f"{rank}: {to_latex(simplified_rule(rule))}", soft_wrap=True, markup=False, highlight=False)


@app.command("export")
def optimizers_export(
    run_ref: RunArg,
    rank: Annotated[int, typer.Option("--rank", help="Which rule: 1 is the best.", min=1, max=MAX_ID)] = 1,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Python file to write.")] = None,
    name: Annotated[str, typer.Option("--name", help="Class name of the optimizer.")] = "DiscoveredOptimizer",
    storage: StorageOpt = None,
) -> None:
    """Write a Python file defining the rule's optimizer class; it needs PyTorch only, not l2l."""
    from l2l.optsearch.export import class_name_problem, export_source

    with user_errors():
        problem = class_name_problem(name)
        if problem is not None:
            raise UsageError(f"--name: {problem}")
        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        ranked = best_rules(store, run_id, rank)
        if len(ranked) < rank:
            raise UsageError(f"run {run_id} has only {len(ranked)} finished children; --rank {rank} does not exist")
        child, rule = ranked[rank - 1]
        info = child.metrics.get("info") or {}
        tuned = sorted(float(t["lr"]) for t in (info.get("tasks") or {}).values() if t.get("lr") is not None)
        # a suite's rule was tuned per task: its default lr is their median, said so
        lr = tuned[len(tuned) // 2] if tuned else float(info.get("best_lr", 1e-3))
        path = output or Path(f"run{run_id}_rank{rank}_optimizer.py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(export_source(rule, class_name=name, lr=lr, module=path.stem))
        where = (
            f"the median of its tuned rates on {len(tuned)} tasks"
            if tuned
            else "its tuned rate"
            if "best_lr" in info
            else "a default"
        )
        console.print(
            f"wrote {path}: class {name}, rule of child {child.number} (reward {fmt(child.reward)}); "
            f"default lr {lr:g}, {where}",
            highlight=False,
        )


_RUN_RANK = re.compile(r"^(.+):(-?\d+)$")  # a run's id or name, then the rank (no rule's text has a colon)


def contenders_of(names: list[str], storage: str | None) -> list[Contender]:
    """Each argument as an optimizer: a preset name, RUN:RANK (a search's found rule), or a rule's text."""
    from l2l.optsearch.language import RuleError, parse, to_text
    from l2l.optsearch.presets import PRESETS
    from l2l.optsearch.tuning import Contender

    out: list[Contender] = []
    store: Store | None = None  # opened once, for the first RUN:RANK
    for i, name in enumerate(names, start=1):
        if name in PRESETS:
            out.append(Contender(name, PRESETS[name]))
        elif match := _RUN_RANK.match(name):
            rank = int(match[2])
            if rank < 1:
                raise UsageError(f"{name}: the rank of a run's rule starts at 1 (its best), got {rank}")
            store = store or open_store(storage)
            run_id = run_id_of(store, match[1])
            ranked = best_rules(store, run_id, rank)
            if len(ranked) < rank or rank < 1:
                raise UsageError(f"run {run_id} has {len(ranked)} distinct rules; {name} does not exist")
            out.append(Contender(f"run{run_id}#{rank}", to_text(ranked[rank - 1][1])))
        else:
            try:
                out.append(Contender(f"rule{i}", to_text(parse(name))))
            except RuleError as exc:
                if not name.split()[1:] and not any(c in name for c in ";=:"):  # one word: a preset mistyped?
                    import difflib

                    near = difflib.get_close_matches(name.lower(), PRESETS, n=1, cutoff=0.6)
                    maybe = f" (did you mean {near[0]!r}?)" if near else ""
                    known = ", ".join(PRESETS)
                    raise UsageError(f"unknown optimizer preset {name!r}{maybe}; presets: {known}") from None
                raise UsageError(
                    f"{name!r} is not a preset ({', '.join(PRESETS)}), RUN:RANK, or a rule: {exc}"
                ) from None
    twice = sorted({c.label for c in out if [d.label for d in out].count(c.label) > 1})
    if twice:
        raise UsageError(f"optimizer {twice[0]!r} is given more than once; name each optimizer once")
    return out


def board_table(board: dict[str, Any]) -> Any:
    """Task x optimizer: test mean ± 95% interval, the chosen lr (and weight decay); '!' marks a choice at
    its grid's edge; the best of each row is bold and starred (several on a tie, which counts as nobody's win); the last
    row counts tasks won."""

    from rich.table import Table

    from l2l.optsearch.board import interval_text

    labels = [o["label"] for o in board["optimizers"]]
    n = board["seeds"]
    title = f"test metric, mean ± 95% CI over {n} seeds" if n > 1 else "test metric of one seed (no interval)"
    table = Table("task", "metric", *labels, title=title, caption="* the best of its row (a tie wins nobody the task)")
    for task in board["tasks"]:
        name = task["name"]
        row = [f"{name}\n[dim]{task['suite']}[/]", f"{task['metric']} {'↑' if task['higher_is_better'] else '↓'}"]
        for label in labels:
            c = board["cells"][name].get(label)
            if c is None:  # a board Ctrl-C stopped before this pair finished
                row.append("[dim]not run[/]")
                continue
            if c["failed"]:  # what failed, in full; its first reason cut (the JSON keeps it whole)
                what, _, why = c["failed"].partition(": ")
                cut = why if len(why) <= 40 else why[: why.rfind(" ", 0, 40) if " " in why[:40] else 40] + " ..."
                row.append(f"[red]failed[/]\n[dim]{escape(what)}{': ' + escape(cut) if why else ''}[/]")
                continue
            text = f"{c['test_mean']:.4f} {interval_text(c, task['metric'])}".rstrip()  # clipped to the metric's range
            if label in board["leaders"][name]:  # marked in words too: a table piped to a file has no bold
                text = f"[bold green]{text} *[/]"
            setting = f"lr {c['lr']:.3g}{'!' if c['lr_at_edge'] else ''}"
            if c["weight_decay"] is not None:
                setting += f" wd {c['weight_decay']:g}{'!' if c.get('wd_at_edge') else ''}"
            if c["diverged_seeds"]:
                bad = len(c["diverged_seeds"])
                setting += f" [red]{bad} seed{'s' * (bad != 1)} diverged[/]"
            row.append(f"{text}\n[dim]{setting}[/]")
        table.add_row(*row)
    table.add_row("[bold]tasks won[/]", "", *(str(board["wins"][label]) for label in labels))
    return table


@app.command("evaluate")
def optimizers_evaluate(
    optimizers: Annotated[
        list[str], typer.Argument(metavar="RULE_TEXT|PRESET|RUN:RANK...", help="Optimizers to compare.")
    ],
    suite: Annotated[
        str, typer.Option("--suite", help="search, heldout, user, all, or task names separated by commas.")
    ] = "heldout",
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per task (weights and data order).", min=1)] = 5,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="JSON file for the board.")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes to spread runs over (default: the CPU count).", min=1)
    ] = None,
    lrs: Annotated[
        str | None,
        typer.Option("--lrs", help="Learning-rate grid, comma-separated (default: 1e-5..10, half decades)."),
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """Tune every optimizer the same way on every task (lr grid, weight decay where the rule has it; chosen
    on validation), run the chosen setting with every seed, and print the test metrics."""
    import os
    import time

    from l2l.optsearch.board import BoardInterrupted, run_board
    from l2l.optsearch.suite import TaskError, resolve_suite
    from l2l.optsearch.tuning import LR_GRID
    from l2l.runs.cli.plot import parse_lrs

    with user_errors():
        if output is not None:
            check_writable(output)  # now, not after the board has run
        contenders = contenders_of(optimizers, storage)
        try:
            tasks = resolve_suite(suite, warn=lambda m: console.print(f"[yellow]warning:[/] {escape(m)}"))
        except TaskError as exc:
            raise UsageError(str(exc)) from None
        grid = parse_lrs(lrs, LR_GRID)
        n_workers = workers or min(os.cpu_count() or 1, len(tasks) * len(contenders))
        for c in contenders:
            console.print(f"{c.label}: {escape(c.rule)}", highlight=False)
        started = time.perf_counter()
        done = [0]

        def progress(cell: Any) -> None:
            done[0] += 1
            what = cell.failed or f"test {cell.test_mean:.4f} at lr {cell.lr:.3g}"
            console.print(
                f"[{done[0]}/{len(tasks) * len(contenders)}] {cell.task} {cell.label}: {escape(what)} "
                f"({cell.runs} run{'s' * (cell.runs != 1)}, {cell.seconds:.1f} s of training; "
                f"{time.perf_counter() - started:.0f} s since the start)",
                highlight=False,
            )

        try:
            board = run_board(contenders, tasks, seeds, lrs=grid, workers=n_workers, progress=progress)
        except BoardInterrupted as stop:  # what finished is shown and kept; the rest is named as not run
            board = stop.board
            console.print(board_table(board))
            kept = ""
            if output is not None and done[0]:
                write_board(output, board)
                kept = f"; wrote the {done[0]} finished to {output}"
            total = len(tasks) * len(contenders)
            err_console.print(f"[yellow]interrupted[/] after {done[0]} of {total} pairs{kept}", highlight=False)
            raise typer.Exit(130) from None
        console.print(board_table(board))
        cells = [c for row in board["cells"].values() for c in row.values()]
        if any(c["lr_at_edge"] or c["wd_at_edge"] for c in cells):
            console.print("! : the chosen setting is at the edge of its grid (widen it with --lrs)", highlight=False)
        size = f"{len(tasks)} task{'s' * (len(tasks) != 1)} x {len(contenders)} optimizer{'s' * (len(contenders) != 1)}"
        console.print(f"{size} in {board['seconds']:.0f} s", highlight=False)
        if output is not None:
            write_board(output, board)
            console.print(f"wrote {output}", highlight=False)
        if all(c["failed"] for c in cells):  # a script must be able to tell that nothing was measured
            raise UsageError(f"every one of the {len(cells)} evaluations failed (the table says why)")


def write_board(path: Path, board: dict[str, Any]) -> None:
    """The board as strict JSON (no NaN), its folders made."""
    import json

    from l2l.optsearch.board import for_json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(for_json(board), indent=1))
