"""The `l2l` command line (Typer + Rich); heavy modules (torch, SQLAlchemy) are imported inside commands."""

from __future__ import annotations

import os
import signal
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from l2l.runs.store import Store

app = typer.Typer(
    name="l2l",
    help="Learning to learn: search neural architectures and optimizer update rules with an RNN controller.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
spaces_app = typer.Typer(help="List and inspect search spaces.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect and export recorded runs.", no_args_is_help=True)
plot_app = typer.Typer(help="Draw plots of a run.", no_args_is_help=True)
app.add_typer(spaces_app, name="spaces")
app.add_typer(runs_app, name="runs")
app.add_typer(plot_app, name="plot")

console = Console()
err_console = Console(stderr=True)

STORAGE_ENV = "L2L_STORAGE"
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage", help=f"SQLAlchemy URL of the results store [env {STORAGE_ENV}; default sqlite:///l2l.db]."
    ),
]
RunArg = Annotated[int, typer.Argument(metavar="RUN", help="Run id (see `l2l runs list`).")]


class UsageError(ValueError):
    """A flag or config file given to the CLI is invalid."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line and exit non-zero (no traceback for user mistakes)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's domain errors into one-line messages."""
    from l2l.controllers import ControllerError
    from l2l.nas.data import DatasetError
    from l2l.optsearch.language import RuleError
    from l2l.runs.executors import ExecutorError
    from l2l.runs.search import SearchError
    from l2l.runs.store import StoreError
    from l2l.search_spaces import SpaceError

    try:
        yield
    except (
        UsageError,
        SpaceError,
        ControllerError,
        StoreError,
        SearchError,
        ExecutorError,
        DatasetError,
        RuleError,
    ) as exc:
        fail(str(exc))


def open_store(storage: str | None) -> Store:
    """The store named by --storage, $L2L_STORAGE, or the SQLite file l2l.db here."""
    from l2l.runs.store import DEFAULT_STORAGE, Store

    return Store(storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE)


def parse_assignments(items: list[str], flag: str) -> dict[str, Any]:
    """KEY=VALUE pairs; values are read as TOML (numbers, booleans, quoted strings) or else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML file of search settings (the fields of `SearchConfig`)."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


@app.command()
def search(
    space: Annotated[
        str | None, typer.Option("--space", help="Search space: a registered name or path/to/file.py:Class.")
    ] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="reinforce, random or evolution.")] = None,
    children: Annotated[int | None, typer.Option("--children", "-n", help="Children to train in all.", min=1)] = None,
    batch: Annotated[int | None, typer.Option("--batch", "-m", help="Children per controller update.", min=1)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the run (controller and children).")] = None,
    storage: StorageOpt = None,
    resume: Annotated[int | None, typer.Option("--resume", metavar="RUN", help="Continue an interrupted run.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of search settings.")] = None,
    space_option: Annotated[
        list[str] | None, typer.Option("--space-option", "-S", help="Space option KEY=VALUE.")
    ] = None,
    controller_option: Annotated[
        list[str] | None,
        typer.Option("--controller-option", "-C", help="Controller setting KEY=VALUE (e.g. preset=enas)."),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option("--executor", help="Where children run: ray (default; local CPUs/GPUs or a cluster) or local."),
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster to join: auto or host:port [default: embedded].")
    ] = None,
    cpus_per_child: Annotated[
        float | None, typer.Option("--cpus-per-child", help="CPUs Ray reserves per child [default: 1].", min=0)
    ] = None,
    gpus_per_child: Annotated[
        float | None,
        typer.Option("--gpus-per-child", help="GPUs per child; fractions share a GPU (0.25: 4 children).", min=0),
    ] = None,
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", help="At most this many children at once.", min=1)
    ] = None,
    child_timeout: Annotated[
        float | None, typer.Option("--child-timeout", help="Cancel and fail a child running longer (seconds).")
    ] = None,
    workers_per_child: Annotated[
        int | None,
        typer.Option("--workers-per-child", help="Train each child data-parallel on K processes.", min=1),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", help="sync (batches, Zoph & Le) or async (keep workers busy) [default: async if >1]."),
    ] = None,
    device: Annotated[str | None, typer.Option("--device", help="Torch device of the children (cpu, cuda).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A label for the run.")] = None,
    pruner: Annotated[
        str | None, typer.Option("--pruner", help="Stop hopeless children early: median, halving or hyperband.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run a search: the controller proposes children, they train, their rewards teach the controller."""
    with user_errors():
        from l2l.runs.search import Search, SearchConfig, SearchInterrupted

        flags = {
            "space": space,
            "strategy": strategy,
            "children": children,
            "batch": batch,
            "seed": seed,
            "executor": executor,
            "device": device,
            "name": name,
            "pruner": pruner,
            "mode": mode,
        }
        given = {k: v for k, v in flags.items() if v is not None}
        ray_flags = {
            "address": address,
            "cpus_per_child": cpus_per_child,
            "gpus_per_child": gpus_per_child,
            "max_concurrent": max_concurrent,
            "child_timeout": child_timeout,
            "workers_per_child": workers_per_child,
        }
        executor_opts = {k: v for k, v in ray_flags.items() if v is not None}
        space_opts = parse_assignments(space_option or [], "--space-option")
        ctrl_opts = parse_assignments(controller_option or [], "--controller-option")
        store = open_store(storage)
        if resume is not None:
            extra = sorted(given) + (["config"] if config else []) + (["space-option"] if space_opts else [])
            extra += ["controller-option"] if ctrl_opts else []
            extra += [k.replace("_", "-") for k in sorted(executor_opts)]
            if extra:
                raise UsageError(
                    f"--resume continues run {resume} with its stored settings; drop --{', --'.join(extra)}"
                )
            run = Search.resume(store, resume, listener=None)
        else:
            settings: dict[str, Any] = load_config_file(config) if config else {}
            settings.update(given)
            if space_opts:
                settings["space_options"] = {**settings.get("space_options", {}), **space_opts}
            if ctrl_opts:
                settings["controller"] = {**settings.get("controller", {}), **ctrl_opts}
            if executor_opts:
                settings["executor_options"] = {**settings.get("executor_options", {}), **executor_opts}
            settings.setdefault("executor", "ray")  # the command's default; SearchConfig's is local
            run = Search.start(store, SearchConfig.from_json(settings))
        _install_sigterm()
        cfg = run.config
        console.print(
            f"run [bold]{run.run_id}[/]: space={cfg.space} strategy={cfg.strategy} children={cfg.children} "
            f"batch={cfg.batch} seed={cfg.seed} store={store.label}"
            + (f" (resumed, {run.requeued} children re-queued)" if resume is not None else ""),
            highlight=False,
        )
        display = _Progress(run.run_id, cfg.children, store, quiet)
        run.listener = display.on_event
        try:
            with display:
                run.run()
        except SearchInterrupted as exc:
            err_console.print(f"[yellow]{exc}[/]", highlight=False)
            raise typer.Exit(130) from None
        _print_summary(store, run.run_id)


def _install_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class _Progress:
    """The live progress bar of `l2l search`."""

    def __init__(self, run_id: int, total: int, store: Store, quiet: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.quiet = quiet
        counts = store.count_children(run_id)
        self.done, self.failed = counts["done"], counts["failed"]
        top = store.top_children(run_id, 1)
        self.best = top[0].reward if top else None
        self.progress = Progress(
            TextColumn("[bold]run {task.fields[run]}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}  best {task.fields[best]}  batch {task.fields[mean]}"),
            TextColumn("H {task.fields[entropy]}"),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self.task = self.progress.add_task(
            "search",
            total=total,
            completed=self.done + self.failed,
            run=run_id,
            failed=self.failed,
            best=_fmt(self.best),
            mean="-",
            entropy="-",
        )

    def __enter__(self) -> _Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_event(self, event: Any) -> None:
        from l2l.runs.search import ChildEvent

        if isinstance(event, ChildEvent):
            if event.status == "done":
                self.done += 1
                if event.reward is not None and (self.best is None or event.reward > self.best):
                    self.best = event.reward
            else:
                self.failed += 1
                if self.quiet:
                    return
                reason = (event.error or "").splitlines()[0] if event.error else "unknown"
                console.print(f"[red]child {event.number} failed:[/] {reason}", highlight=False)
            self.progress.update(self.task, completed=self.done + self.failed, failed=self.failed, best=_fmt(self.best))
        else:
            self.progress.update(self.task, mean=_fmt(event.stats.mean_reward), entropy=_fmt(event.stats.entropy, 2))


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_summary(store: Store, run_id: int) -> None:
    counts = store.count_children(run_id)
    top = store.top_children(run_id, 1)
    best = f"best reward {top[0].reward:.4f} (child {top[0].number})" if top else "no child finished"
    console.print(
        f"run {run_id} done: {counts['done']} children trained, {counts['failed']} failed; {best}. "
        f"See `l2l runs top {run_id}` and `l2l plot progress {run_id} -o progress.png`.",
        highlight=False,
    )


# spaces ---------------------------------------------------------------------------------------


@spaces_app.command("list")
def spaces_list() -> None:
    """List the registered search spaces."""
    from rich.table import Table

    with user_errors():
        from l2l.search_spaces import available_spaces, load_space_class

        table = Table("name", "description")
        for space_name in available_spaces():
            try:
                table.add_row(space_name, load_space_class(space_name).description)
            except ValueError as exc:
                table.add_row(space_name, f"[red]cannot load: {exc}[/]")
        console.print(table)


@spaces_app.command("show")
def spaces_show(
    space: Annotated[str, typer.Argument(metavar="SPACE", help="Name or path/to/file.py:Class.")],
    space_option: Annotated[
        list[str] | None, typer.Option("--space-option", "-S", help="Space option KEY=VALUE.")
    ] = None,
) -> None:
    """Show a space's decisions, the number of tokens and the number of candidates."""
    from rich.table import Table

    with user_errors():
        from l2l.search_spaces import load_space

        sp = load_space(space, parse_assignments(space_option or [], "--space-option"))
        decisions = list(sp.decisions())
        size = 1
        table = Table("#", "decision", "kind", "choices")
        for i, d in enumerate(decisions):
            if d.kind == "categorical":
                size *= d.n_choices
                table.add_row(str(i), d.name, d.kind, ", ".join(d.options))
            else:
                size *= 2**d.n_prev
                table.add_row(str(i), d.name, d.kind, f"any subset of {d.n_prev} earlier layers")
        doc = (type(sp).__doc__ or "").strip()
        console.print(f"[bold]{sp.name}[/]: {sp.description}\n{doc}\noptions: {sp.options}", highlight=False)
        console.print(table)
        console.print(f"{sum(d.width for d in decisions)} tokens, {size:,} candidates", highlight=False)


# runs -----------------------------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    storage: StorageOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="How many runs, newest first.")] = 20,
) -> None:
    """List recorded runs, newest first."""
    from rich.table import Table

    with user_errors():
        store = open_store(storage)
        table = Table("run", "name", "space", "strategy", "status", "children", "failed", "best", "created")
        for r in store.list_runs(limit):
            counts = store.count_children(r.id)
            top = store.top_children(r.id, 1)
            table.add_row(
                str(r.id),
                r.name or "",
                r.space,
                r.strategy,
                r.status,
                f"{counts['done'] + counts['failed']}/{r.n_children}",
                str(counts["failed"]),
                _fmt(top[0].reward) if top else "-",
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            )
        console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: RunArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Refresh until the run stops running.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.", min=0.1)] = 2.0,
    storage: StorageOpt = None,
) -> None:
    """Show a run's settings, progress, best child and latest controller statistics."""
    import json

    with user_errors():
        store = open_store(storage)
        if not follow:
            for line in _run_lines(store, run_id):
                console.print(line, highlight=False)
            console.print("config: " + json.dumps(store.get_run(run_id).config, sort_keys=True), highlight=False)
            return
        import time

        from rich.live import Live
        from rich.text import Text

        def view() -> Text:
            return Text.from_markup("\n".join(_run_lines(store, run_id, latest=5)))

        with Live(view(), console=console, auto_refresh=False) as live:
            while store.get_run(run_id).status == "running":
                time.sleep(interval)
                live.update(view(), refresh=True)


def _run_lines(store: Store, run_id: int, latest: int = 0) -> list[str]:
    """The summary of a run, as Rich markup lines (and its ``latest`` finished children)."""
    run = store.get_run(run_id)
    counts = store.count_children(run_id)
    top = store.top_children(run_id, 1)
    updates = store.updates(run_id)
    lines = [
        f"[bold]run {run.id}[/] {run.name or ''}  status: {run.status}",
        f"space {run.space}, strategy {run.strategy}, seed {run.seed}, code {run.code_version}",
        f"created {run.created_at:%Y-%m-%d %H:%M:%S}, finished {run.finished_at or '-'}",
        f"children: {counts['done']} done, {counts['failed']} failed, {counts['running']} running, "
        f"{counts['queued']} queued, of {run.n_children}",
    ]
    if run.error:
        lines.append(f"[red]error:[/] {run.error}")
    if top:
        best = top[0]
        lines.append(f"best: child {best.number}, reward {best.reward:.4f}: {_describe(run, best.spec)}")
    if updates:
        u = updates[-1]
        lines.append(
            f"controller: {len(updates)} updates, last mean reward {u.mean_reward:.4f}, entropy {u.entropy:.3f}, "
            f"baseline {_fmt(u.baseline)}"
        )
    if latest:
        finished = [c for c in store.children(run_id) if c.finished_at is not None]
        for c in sorted(finished, key=lambda c: c.finished_at)[-latest:]:  # type: ignore[arg-type, return-value]
            where = f"{c.worker or '-'} {c.device or ''}".strip()
            lines.append(f"  child {c.number} {c.status} reward {_fmt(c.reward)} on {where}")
    return lines


def _describe(run: Any, spec_json: dict[str, Any]) -> str:
    """A spec as its space describes it, escaped for Rich (descriptions may hold ``[...]``)."""
    from rich.markup import escape

    from l2l.search_spaces import SpaceError, Spec, load_space

    spec = Spec.from_json(spec_json)
    try:
        space = load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
        return escape(space.describe(spec))
    except SpaceError:
        return escape(" ".join(f"{k}={v}" for k, v in spec.values))


@runs_app.command("top")
def runs_top(
    run_id: RunArg,
    k: Annotated[int, typer.Option("-k", help="How many children.", min=1)] = 10,
    storage: StorageOpt = None,
) -> None:
    """The best children of a run by reward."""
    from rich.table import Table

    with user_errors():
        store = open_store(storage)
        run = store.get_run(run_id)
        table = Table("rank", "child", "reward", "val", "test", "params", "candidate")
        for rank, c in enumerate(store.top_children(run_id, k), start=1):
            params = (c.metrics.get("cost") or {}).get("params")
            table.add_row(
                str(rank),
                str(c.number),
                _fmt(c.reward),
                _val_metric({**c.metrics, "val_acc": c.val_acc}),
                _test_metric(c.metrics),
                f"{int(params):,}" if params is not None else "-",
                _describe(run, c.spec),
            )
        console.print(table)


def _val_metric(metrics: dict[str, Any]) -> str:
    """Validation accuracy, or bits per character for language models."""
    if metrics.get("val_acc") is not None:
        return f"acc {_fmt(metrics['val_acc'])}"
    bpc = (metrics.get("info") or {}).get("val_bpc")
    return f"bpc {bpc:.3f}" if bpc is not None else "-"


def _test_metric(metrics: dict[str, Any]) -> str:
    """Test accuracy, or test bits per character for language models."""
    test = metrics.get("test") or {}
    if test.get("test_acc") is not None:
        return f"acc {_fmt(test['test_acc'])}"
    if test.get("test_bpc") is not None:
        return f"bpc {test['test_bpc']:.3f}"
    return "-"


EXPORT_COLUMNS = (
    "number",
    "batch",
    "status",
    "reward",
    "controller_reward",
    "val_loss",
    "val_acc",
    "policy_version",
    "log_prob",
    "entropy",
    "attempts",
    "wall_time",
    "worker",
    "device",
    "error",
)


@runs_app.command("best")
def runs_best(
    run_id: RunArg,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train the best child again from its spec.")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs of the retraining.", min=1)] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Training steps of the retraining (language models).", min=1)
    ] = None,
    device: Annotated[str, typer.Option("--device", help="Torch device of the retraining.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the retraining.")] = 0,
    storage: StorageOpt = None,
) -> None:
    """The best child of a run; with --retrain, train it again from its stored spec (e.g. longer) and
    report its validation and test figures (accuracy, or bits per character for language models)."""
    from l2l.search_spaces import Context, Spec

    with user_errors():
        store = open_store(storage)
        run = store.get_run(run_id)
        top = store.top_children(run_id, 1)
        if not top:
            raise UsageError(f"run {run_id} has no finished child yet")
        best = top[0]
        space = _space_of(run)
        spec = Spec.from_json(best.spec)
        console.print(
            f"best of run {run_id}: child {best.number}, reward {_fmt(best.reward)}, "
            f"test {_test_metric(best.metrics)}: {_describe(run, best.spec)}",
            highlight=False,
        )
        if not retrain:
            return
        budget: dict[str, int] = {"epochs": epochs} if epochs is not None else {}
        if steps is not None:
            budget["steps"] = steps
        with console.status(f"retraining child {best.number}..."):
            from l2l.runs.executors import ChildTask, run_child

            result = run_child(space, ChildTask(best.number, spec, Context(seed=seed, device=device, budget=budget)))
        if result.status != "done":
            raise UsageError(f"retraining child {best.number} failed: {result.error}")
        metrics = result.to_json()
        length = f" for {epochs} epochs" if epochs else f" for {steps} steps" if steps else ""
        line = f"retrained{length}: validation {_val_metric(metrics)}, test {_test_metric(metrics)}"
        console.print(line, highlight=False)


@runs_app.command("export")
def runs_export(
    run_id: RunArg,
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    storage: StorageOpt = None,
) -> None:
    """Export every child of a run (and, in JSON, the run and its controller updates)."""
    import csv
    import dataclasses
    import io
    import json

    with user_errors():
        if fmt not in ("csv", "json"):
            raise UsageError(f"--format must be csv or json, got {fmt!r}")
        store = open_store(storage)
        run = store.get_run(run_id)
        children = store.children(run_id)
        if fmt == "json":
            payload = {
                "run": dataclasses.asdict(run),
                "children": [dataclasses.asdict(c) for c in children],
                "updates": [dataclasses.asdict(u) for u in store.updates(run_id)],
            }
            text = json.dumps(payload, default=str, indent=2)
        else:
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow([*EXPORT_COLUMNS, "test_acc", "params", "tokens", "spec"])
            for c in children:
                writer.writerow(
                    [getattr(c, col) for col in EXPORT_COLUMNS]
                    + [
                        (c.metrics.get("test") or {}).get("test_acc"),
                        (c.metrics.get("cost") or {}).get("params"),
                        " ".join(str(t) for t in c.tokens),
                        json.dumps(c.spec),
                    ]
                )
            text = buf.getvalue()
        if output is None:
            sys.stdout.write(text)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
            console.print(f"wrote {len(children)} children to {output}", highlight=False)


# plot -----------------------------------------------------------------------------------------


@plot_app.command("progress")
def plot_progress_cmd(
    run_id: RunArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("progress.png"),
    storage: StorageOpt = None,
) -> None:
    """Reward of every child, best so far, batch means and controller entropy."""
    with user_errors():
        from l2l.runs.plots import plot_progress

        store = open_store(storage)
        run = store.get_run(run_id)
        path = plot_progress(run, store.children(run_id), store.updates(run_id), output)
        console.print(f"wrote {path}", highlight=False)


@plot_app.command("pareto")
def plot_pareto_cmd(
    run_id: RunArg,
    cost: Annotated[str, typer.Option("--cost", help="flops, params, latency_s or train_time_s.")] = "flops",
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("pareto.png"),
    storage: StorageOpt = None,
) -> None:
    """Validation accuracy against a cost for every child of a run, with the Pareto front."""
    with user_errors():
        from l2l.runs.plots import plot_pareto

        store = open_store(storage)
        run = store.get_run(run_id)
        try:
            path, front = plot_pareto(run, store.children(run_id), cost, output)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        console.print(f"wrote {path}", highlight=False)
        for value, acc, number in front:
            console.print(f"  child {number}: {cost} {value:.4g}, validation accuracy {acc:.4f}", highlight=False)


@plot_app.command("arch")
def plot_arch_cmd(
    run_id: RunArg,
    rank: Annotated[int, typer.Option("--rank", help="Which child: 1 is the best.", min=1)] = 1,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("arch.png"),
    storage: StorageOpt = None,
) -> None:
    """Draw the best architecture of a run as a graph (layers or cell nodes, ops, skip connections)."""
    with user_errors():
        from l2l.runs.plots import plot_arch
        from l2l.search_spaces import Spec

        store = open_store(storage)
        run = store.get_run(run_id)
        top = store.top_children(run_id, rank)
        if len(top) < rank:
            raise UsageError(f"run {run_id} has {len(top)} finished children; --rank {rank} does not exist")
        child = top[rank - 1]
        space = _space_of(run)
        spec = Spec.from_json(child.spec)
        title = f"run {run_id}, child {child.number}, reward {_fmt(child.reward)}: {space.describe(spec)}"
        path = plot_arch(space.graph(spec), title, output)
        console.print(f"wrote {path}", highlight=False)


def _space_of(run: Any) -> Any:
    from l2l.search_spaces import SpaceError, load_space

    try:
        return load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
    except SpaceError as exc:
        raise UsageError(f"cannot rebuild the space {run.space!r} of run {run.id}: {exc}") from None


@plot_app.command("benchmark")
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


from l2l.runs import cli_optimizers  # noqa: E402,F401  (registers `l2l optimizers` and `l2l plot optimizer`)


def main() -> None:
    """Console-script entry point."""
    app()
