"""`l2l plot progress|pareto|arch|placement|benchmark|optimizer`: PNG plots of a run or of a benchmark's results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from l2l.runs.cli.common import (
    RunArg,
    StorageOpt,
    console,
    is_run_id,
    open_store,
    run_id_of,
    space_of,
    storage_flag,
    user_errors,
)
from l2l.runs.cli.formatting import fmt
from l2l.runs.cli.optimizers import best_rules
from l2l.runs.config import UsageError
from l2l.runs.store_records import MAX_ID

app = typer.Typer(help="Draw plots of a run.", no_args_is_help=True)


@app.command("progress")
def plot_progress_cmd(
    run_ref: RunArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("progress.png"),
    storage: StorageOpt = None,
) -> None:
    """Reward of every child, best so far, batch means and controller entropy."""
    with user_errors():
        from l2l.runs.cli.ranking import ranked_space
        from l2l.runs.plots import PlotError, plot_progress

        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        try:
            path = plot_progress(run, store.children(run_id), store.updates(run_id), output, ranked_space(run))
        except PlotError as exc:
            raise UsageError(str(exc)) from None
        console.print(f"wrote {path}", highlight=False)


@app.command("pareto")
def plot_pareto_cmd(
    run_ref: RunArg,
    cost: Annotated[
        str | None,
        typer.Option(
            "--cost",
            help="A cost the children report: flops, params, latency_s, train_time_s, or a plugin's own "
            "\\[default: flops, or the space's first declared cost where it declares no flops].",
        ),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("pareto.png"),
    storage: StorageOpt = None,
) -> None:
    """Validation accuracy (or the reward, where children have none) against a cost, with the Pareto front."""
    with user_errors():
        from l2l.runs.cli.ranking import ranked_space
        from l2l.runs.plots import pareto_axis, plot_pareto

        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        space = ranked_space(run)
        try:
            children = store.children(run_id)
            declared = tuple(space.cost_metrics) if space is not None else ()
            cost = cost or ("flops" if not declared or "flops" in declared else declared[0])
            path, front, evaluations = plot_pareto(run, children, cost, output, space)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        console.print(f"wrote {path}", highlight=False)
        axis = pareto_axis(children).split(" (")[0]
        for value, acc, number in front:
            n = evaluations[number]
            where = f"child {number}" + (f" (mean of {n} evaluations)" if n > 1 else "")
            amount = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
            console.print(f"  {where}: {cost} {amount}, {axis} {acc:.4f}", highlight=False)


@app.command("arch")
def plot_arch_cmd(
    run_ref: RunArg,
    rank: Annotated[int, typer.Option("--rank", help="Which child: 1 is the best.", min=1, max=MAX_ID)] = 1,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("arch.png"),
    storage: StorageOpt = None,
) -> None:
    """Draw the best architecture of a run as a graph (layers or cell nodes, ops, skip connections)."""
    with user_errors():
        from l2l.runs.arch_plot import plot_arch
        from l2l.runs.cli.ranking import sharing_top
        from l2l.runs.estimates import rank as rank_archs
        from l2l.runs.plots import PlotError
        from l2l.search_spaces import Spec, described

        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        space = space_of(run, store)
        if space.name == "placement":  # its groups on devices, in time: boxes and arcs would say less, and overlap
            where = f"l2l plot placement {run_id}{storage_flag(store)}"
            if not store.top_children(run_id, 1):  # that would fail too: say what is missing
                raise UsageError(f"run {run_id} has no finished child: no placement to draw")
            raise UsageError(f"a placement is drawn by `{where}`: its groups, devices and timeline")
        if run.config.get("weight_sharing") is not None:  # retrained first, else the derived architecture
            top = sharing_top(store, run_id, rank)  # as `runs top` lists them: retrained, then shared scores
            rewards = [c.reward for c in top]
        else:  # by estimated mean, as `l2l runs best` and `runs top` rank them
            archs = rank_archs(store.children(run_id), space).archs[:rank]
            top, rewards = [a.child for a in archs], [a.estimate.estimate for a in archs]
        if len(top) < rank:
            raise UsageError(f"run {run_id} has {len(top)} finished architectures; --rank {rank} does not exist")
        child = top[rank - 1]
        spec = Spec.from_json(child.spec)
        scored = " with shared weights" if child.status != "done" else ""  # a weight-sharing run's score
        title = f"run {run_id}, child {child.number}, reward {fmt(rewards[rank - 1])}{scored}: {described(space, spec)}"
        try:
            path = plot_arch(space.graph(spec), title, output)
        except PlotError as exc:  # a file name it cannot write, or the space's graph(): say which
            said = str(exc) if str(exc).startswith("cannot write") else f"space {space.name!r}: {exc}"
            raise UsageError(said) from None
        console.print(f"wrote {path}", highlight=False)


@app.command("benchmark")
def plot_benchmark_cmd(
    results: Annotated[Path, typer.Argument(metavar="RESULTS.json", help="JSON written by benchmarks/nb201.py.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("benchmark.png"),
) -> None:
    """Best-so-far curves of every strategy, with mean ± sd bands over seeds."""
    import json

    with user_errors():
        from l2l.runs.plots import plot_benchmark

        try:
            payload = json.loads(results.read_text())
        except FileNotFoundError:
            raise UsageError(f"results file {str(results)!r} does not exist") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"results file {str(results)!r} is not JSON: {exc}") from None
        try:
            path = plot_benchmark(payload, output)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot plot {str(results)!r}: {exc}") from None
        console.print(f"wrote {path}", highlight=False)


def parse_lrs(lrs: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    """The --lrs grid: comma-separated positive learning rates, sorted; ``default`` when not given."""
    if lrs is None:
        return default
    try:
        grid = tuple(sorted(float(x) for x in lrs.split(",")))
    except ValueError:
        raise UsageError(f"--lrs expects comma-separated numbers, got {lrs!r}") from None
    if not grid or not all(0 < x < math.inf for x in grid):  # nan compares false both ways: sorted keeps it
        raise UsageError(f"--lrs must be finite and positive, got {lrs!r}")
    return grid


@app.command("optimizer")
def plot_optimizer_cmd(
    target: Annotated[
        str,
        typer.Argument(
            metavar="RUN|BOARD.json",
            help="An optimizer-search run (id or name), or a board from `l2l optimizers evaluate -o`.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the plots in.")] = Path("out"),
    top: Annotated[int, typer.Option("--top", help="How many of the best rules.", min=1, max=6)] = 3,
    lrs: Annotated[
        str | None,
        typer.Option(
            "--lrs",
            help="Comma-separated learning rates every optimizer is tuned on \\[default: 1e-4..1 for a run of "
            "one task, the scoreboard's 1e-5..10 for a suite run].",
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes for a suite run's board (default: the CPU count).", min=1)
    ] = None,
    storage: StorageOpt = None,
) -> None:
    """For a run of one task: heatmaps of the best rules' updates over (g, m), and their training curves
    against tuned SGD with momentum and Adam on the child task and on a task the search never saw. For a
    suite run: a one-seed scoreboard of its best rules against Adam and SGD with momentum on its search
    tasks, drawn as a board. For a board: a performance profile, per-task validation curves at the tuned
    settings, and the update heatmaps."""
    if output.exists() and not output.is_dir():  # before any tuning, not after it
        with user_errors():
            raise UsageError(f"-o {str(output)!r} is a file: -o names the folder the plots are written in")
    if not is_run_id(target) and (target.endswith(".json") or Path(target).is_file()):
        with user_errors():
            _plot_board(Path(target), output)
        return
    import dataclasses
    import json

    from l2l.optsearch.language import to_formula, to_text
    from l2l.optsearch.plots import plot_curves, plot_heatmaps
    from l2l.optsearch.task import BASELINE_LRS, TASKS, UNSEEN_TASK

    with user_errors():
        store = open_store(storage)
        run_id = run_id_of(store, target)
        run = store.get_run(run_id)
        if (run.config.get("space_options") or {}).get("suite"):
            _plot_suite_run(store, run, top, lrs, output, workers)
            return
        grid = parse_lrs(lrs, BASELINE_LRS)
        ranked = best_rules(store, run_id, top)
        rules = [rule for _, rule in ranked]
        labels = [f"#{i} child {c.number}" for i, (c, _) in enumerate(ranked, start=1)]
        heat = plot_heatmaps(rules, output / f"run{run_id}_update_heatmaps.png", labels=labels)
        console.print(f"wrote {heat}", highlight=False)
        labelled = [(f"#{i} child {c.number}", rule) for i, (c, rule) in enumerate(ranked, start=1)]
        options = run.config.get("space_options") or {}
        seen = TASKS[str(options.get("task", "digits-cnn"))]
        if options.get("epochs") is not None:  # the children's task as they trained on it (`-S epochs=`)
            seen = dataclasses.replace(seen, epochs=int(options["epochs"]))
        path = output / f"run{run_id}_optimizer_summary.json"
        rule_rows = [{"child": c.number, "rule": to_text(r), "formula": to_formula(r)} for c, r in ranked]
        tasks = (seen, UNSEEN_TASK)
        results = reused_curves(path, rule_rows, grid, [t.name for t in tasks])
        if results is not None:
            console.print(f"reusing the training in {path} (delete it to train again)", highlight=False)
        else:
            results = train_curves(labelled, tasks, grid)
        curves = plot_curves(results, output / f"run{run_id}_training_curves.png")
        console.print(f"wrote {curves}", highlight=False)
        summary = {
            "run": run_id,
            "lrs": list(grid),
            "rules": rule_rows,
            "tasks": {t: [dataclasses.asdict(c) for c in cs] for t, cs in results.items()},
        }
        path.write_text(json.dumps(summary, indent=2))
        console.print(f"wrote {path}", highlight=False)
        for task_name, cs in results.items():
            line = ", ".join(f"{c.label} {fmt(c.val_acc)}" for c in cs)
            console.print(f"{task_name} validation accuracy at the best lr: {line}", highlight=False)


def reused_curves(path: Path, rules: list[dict[str, Any]], grid: tuple[float, ...], tasks: list[str]) -> Any:
    """The curves of an earlier `plot optimizer` of the same rules, grid and tasks (its summary file), or None."""
    import json

    from l2l.optsearch.plots import Curve

    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if old.get("rules") != rules or old.get("lrs") != list(grid) or sorted(old.get("tasks", {})) != sorted(tasks):
        return None
    try:
        return {t: [Curve(**c) for c in cs] for t, cs in old["tasks"].items()}
    except TypeError:
        return None


def train_curves(labelled: list[tuple[str, Any]], tasks: Any, grid: tuple[float, ...]) -> dict[str, Any]:
    """Tune and train every rule and baseline on every task, saying up front what it costs and showing a bar
    with what it is training and the time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from l2l.optsearch.plots import BASELINES, tuned_curves

    total = len(tasks) * (len(labelled) + len(BASELINES))
    console.print(
        f"training {len(labelled)} rule{'s' * (len(labelled) != 1)} and {len(BASELINES)} baselines at up to "
        f"{len(grid)} learning rate{'s' * (len(grid) != 1)} each "
        f"on {len(tasks)} tasks ({total} sweeps; several minutes on 2 cores)",
        highlight=False,
    )
    results: dict[str, Any] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("starting", total=total)
        for task in tasks:
            sweeps = [0]

            def started(label: str, name: str = task.name, sweeps: list[int] = sweeps) -> None:
                if sweeps[0]:
                    progress.advance(bar, 1)  # the sweep before this one is done
                sweeps[0] += 1
                progress.update(bar, description=f"{name}: {label}")

            results[task.name] = tuned_curves(labelled, task, grid, on_start=started)
            progress.advance(bar, 1)
    return results


def _plot_board(path: Path, output: Path) -> None:
    import json

    from l2l.optsearch.board_plots import plot_profile, plot_task_curves
    from l2l.optsearch.language import parse
    from l2l.optsearch.plots import plot_heatmaps

    try:
        board = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{str(path)!r} is neither a run id nor an existing board file") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"board file {str(path)!r} is not JSON: {exc}") from None
    if not isinstance(board, dict) or not {"optimizers", "tasks", "cells", "seeds"} <= set(board):
        raise UsageError(f"{str(path)!r} is not a board written by `l2l optimizers evaluate -o`")
    stem = path.stem
    written = [
        plot_profile(board, output / f"{stem}_profile.png"),
        plot_task_curves(board, output / f"{stem}_curves.png"),
        plot_heatmaps(
            [parse(o["rule"]) for o in board["optimizers"][:6]],
            output / f"{stem}_update_heatmaps.png",
            labels=[o["label"] for o in board["optimizers"][:6]],
        ),
    ]
    for p in written:
        console.print(f"wrote {p}", highlight=False)


def _plot_suite_run(store: Any, run: Any, top: int, lrs: str | None, output: Path, workers: int | None) -> None:
    """A run scored on the task suite: its best rules and tuned Adam and SGD with momentum on the run's
    suite (one seed, the scoreboard's tuning), drawn as a board."""
    import json
    import os

    from l2l.optsearch.board import for_json, run_board
    from l2l.optsearch.language import to_text
    from l2l.optsearch.presets import PRESETS
    from l2l.optsearch.tuning import LR_GRID, Contender

    space = space_of(run)
    ranked = best_rules(store, run.id, top)
    contenders = [Contender(f"#{i} child {c.number}", to_text(r)) for i, (c, r) in enumerate(ranked, start=1)]
    contenders += [Contender(name, PRESETS[name]) for name in ("adam", "sgdm")]
    tasks = space.suite_tasks()  # type: ignore[attr-defined]
    with console.status(f"tuning {len(contenders)} optimizers on {len(tasks)} tasks..."):
        board = run_board(contenders, tasks, 1, lrs=parse_lrs(lrs, LR_GRID), workers=workers or os.cpu_count() or 1)
    path = output / f"run{run.id}_board.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(for_json(board), indent=1))  # strict JSON: no NaN
    console.print(f"wrote {path}", highlight=False)
    _plot_board(path, output)


@app.command("placement")
def plot_placement_cmd(
    run_ref: RunArg,
    rank: Annotated[int, typer.Option("--rank", help="Which child: 1 is the best.", min=1, max=MAX_ID)] = 1,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("placement.png"),
    storage: StorageOpt = None,
) -> None:
    """Draw a placement run's best placement: groups coloured by device and the simulated step's timeline."""
    with user_errors():
        from l2l.runs.placement_plots import plot_placement
        from l2l.runs.plots import PlotError
        from l2l.search_spaces import Spec
        from l2l.search_spaces.placement import PlacementSpace

        store = open_store(storage)
        run_id = run_id_of(store, run_ref)
        run = store.get_run(run_id)
        space = space_of(run, store)  # with the op timings the run measured
        if not isinstance(space, PlacementSpace):
            raise UsageError(f"run {run_id} searched the space {space.name!r}; plot placement draws placement runs")
        top = store.top_children(run_id, rank)
        if len(top) < rank:
            raise UsageError(f"run {run_id} has {len(top)} finished children; --rank {rank} does not exist")
        child = top[rank - 1]
        spec = Spec.from_json(child.spec)
        title = f"run {run_id}, child {child.number}, reward {fmt(child.reward)}: {space.describe(spec)}"
        try:
            info, step = child.metrics.get("info") or {}, (child.metrics.get("cost") or {}).get("step_time_ms")
            measured = "simulated_ms" in info  # a measured child's step is real; its simulation is kept in info
            sim = info["simulated_ms"] if measured else step
            path = plot_placement(space, spec, title, output, sim, step if measured else None)
        except PlotError as exc:
            raise UsageError(str(exc)) from None
        console.print(f"wrote {path}", highlight=False)
