"""`l2l search`: start or resume a run, show its progress, and summarize it."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from l2l.runs.cli.common import (
    SpaceOptionOpt,
    StorageOpt,
    console,
    discard_unstarted,
    err_console,
    open_store,
    run_id_of,
    run_log_file,
    say_ray_log,
    storage_flag,
    user_errors,
)
from l2l.runs.cli.dashboard import start_dashboard
from l2l.runs.cli.optimizers import suite_warnings
from l2l.runs.cli.progress import SearchProgress
from l2l.runs.cli.summary import print_derived, print_summary, start_notes
from l2l.runs.config import EMBEDDED, MOVABLE, SearchFlags, UsageError, parse_assignments
from l2l.runs.store_records import MAX_ID

if TYPE_CHECKING:
    from l2l.runs.store import Store

# Ray's own messages (its banners, worker death notices) go to a file per run here, not into the progress bar
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
LOG_DIR = Path(os.environ.get("L2L_LOG_DIR") or _CACHE / "l2l" / "logs")
# the command's own defaults, below the config file and the flags (SearchConfig's executor is local)
DEFAULTS = {"executor": "ray"}
# a weight-sharing search trains in this process; the screen has nothing to save when rewards are cheap
SHARING_DEFAULTS = {"executor": "local", "strategy": "reinforce"}

SpaceOpt = Annotated[
    str | None, typer.Option("--space", help="A space's name or path/to/file.py:Class \\[default: mlp].")
]
# kept as text: naming the strategies here must not import the controllers (and torch) for `--help`
STRATEGY_HELP = (
    "reinforce+screen (the default: REINFORCE whose proposals a surrogate of the rewards picks), reinforce, ppo, "
    "random, evolution, tpe, gp, qmc; any of them as STRATEGY+screen wears the same screen, and as "
    "STRATEGY+reeval (or STRATEGY+screen+reeval) evaluates the best architectures again when rewards are noisy. "
    "`l2l strategies list` shows them with the plugins'."
)
StrategyOpt = Annotated[str | None, typer.Option("--strategy", help=STRATEGY_HELP)]
ChildrenOpt = Annotated[
    int | None, typer.Option("--children", "-n", help="Children in all \\[default: 100].", min=1, max=MAX_ID)
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        "-m",
        help="Children per controller update \\[default: the strategy's own: 4 for reinforce and any STRATEGY+screen, "
        "1 for evolution, tpe, gp, qmc and random, 10 for ppo].",
        min=1,
    ),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of controller and children \\[default: 0].")]
ResumeOpt = Annotated[str | None, typer.Option("--resume", metavar="RUN", help="Continue a stopped run (id or name).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file of search settings.")]
ControllerOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--controller-option", "-C", metavar="KEY=VALUE", help="Controller setting KEY=VALUE (e.g. preset=enas)."
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option("--executor", help="Where children run: ray (default; local CPUs/GPUs or a cluster) or local."),
]
ADDRESS_HELP = "Ray cluster to join: auto, host:port, or embedded (this machine's; moves a run) \\[default: embedded]."
AddressOpt = Annotated[str | None, typer.Option("--address", help=ADDRESS_HELP)]
CpusOpt = Annotated[
    float | None, typer.Option("--cpus-per-child", help="CPUs Ray reserves per child \\[default: 1].", min=0)
]
GpusOpt = Annotated[
    float | None,
    typer.Option("--gpus-per-child", help="GPUs per child; fractions share a GPU (0.25: 4 children).", min=0),
]
MaxConcurrentOpt = Annotated[
    int | None, typer.Option("--max-concurrent", help="At most this many children at once.", min=1)
]
ChildTimeoutOpt = Annotated[
    float | None, typer.Option("--child-timeout", help="Cancel and fail a child running longer (seconds).")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers-per-child", help="Train each child data-parallel on K workers (see --data-parallel).", min=1
    ),
]
DataParallelOpt = Annotated[
    str | None,
    typer.Option(
        "--data-parallel",
        help="How the --workers-per-child K workers train a child (DistBelief, docs/distbelief.md): sync (gradients "
        "all-reduced every batch; replicas may sit on different nodes), downpour (asynchronous SGD against a sharded "
        "parameter server) or sandblaster (L-BFGS over the full batch, computed in small shards) \\[default: sync].",
    ),
]
DpOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--dp-option",
        metavar="KEY=VALUE",
        help="Data-parallel setting KEY=VALUE: shards, n_fetch, n_push, max_staleness, server_optimizer, server_lr, "
        "unit_batches, snapshot_every (downpour); work_units, lbfgs_lr, lbfgs_iters, history_size, line_search "
        "(sandblaster); spread (spread or pack the workers over the nodes).",
    ),
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="sync (batches, Zoph & Le: the same seed gives the same run on any executor) or async (keep workers "
        "busy; not reproducible: updates follow the order children finish in) \\[default: async if >1 at once].",
    ),
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="Torch device of the children (cpu, cuda).")]
NameOpt = Annotated[str | None, typer.Option("--name", help="A label for the run.")]
PrunerOpt = Annotated[
    str | None, typer.Option("--pruner", help="Stop hopeless children early: median, halving or hyperband.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
WeightSharingOpt = Annotated[
    bool,
    typer.Option(
        "--weight-sharing",
        help="ENAS: train one set of shared weights alongside the controller instead of each child from scratch "
        "(spaces with a shared network: nb201_cell, micro, macro, rnn_cell); runs in this process on --device; "
        "the default strategy becomes reinforce. Then `l2l runs best RUN --retrain`.",
    ),
]
WsOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ws-option",
        "-W",
        metavar="KEY=VALUE",
        help="Weight-sharing setting KEY=VALUE: epochs, warmup, steps, batch_size, optimizer, lr, momentum, "
        "weight_decay, grad_clip, controller_steps, val_batch, derive, sampler, schedule, score "
        "(see docs/weight-sharing.md).",
    ),
]

DashboardOpt = Annotated[
    bool,
    typer.Option(
        "--dashboard",
        help="Serve `l2l dashboard` on this store while the search runs (in a process of its own, on 127.0.0.1), "
        "and print its address.",
    ),
]
DashboardPortOpt = Annotated[
    int | None,
    typer.Option(
        "--dashboard-port", help="Port of --dashboard; 0 takes any free one \\[default: 8080].", min=0, max=65535
    ),
]


def search(
    space: SpaceOpt = None,
    strategy: StrategyOpt = None,
    children: ChildrenOpt = None,
    batch: BatchOpt = None,
    seed: SeedOpt = None,
    storage: StorageOpt = None,
    resume_ref: ResumeOpt = None,
    config: ConfigOpt = None,
    space_option: SpaceOptionOpt = None,
    controller_option: ControllerOptionOpt = None,
    executor: ExecutorOpt = None,
    address: AddressOpt = None,
    cpus_per_child: CpusOpt = None,
    gpus_per_child: GpusOpt = None,
    max_concurrent: MaxConcurrentOpt = None,
    child_timeout: ChildTimeoutOpt = None,
    workers_per_child: WorkersOpt = None,
    data_parallel: DataParallelOpt = None,
    dp_option: DpOptionOpt = None,
    mode: ModeOpt = None,
    device: DeviceOpt = None,
    name: NameOpt = None,
    pruner: PrunerOpt = None,
    quiet: QuietOpt = False,
    weight_sharing: WeightSharingOpt = False,
    ws_option: WsOptionOpt = None,
    dashboard: DashboardOpt = False,
    dashboard_port: DashboardPortOpt = None,
) -> None:
    """Run a search: the controller proposes children, they train, their rewards teach the controller."""
    with user_errors(), ExitStack() as stack:
        from l2l.runs.ray_cluster import route_ray_logs

        flags = SearchFlags.parse(
            {
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
            },
            {
                "address": address,
                "cpus_per_child": cpus_per_child,
                "gpus_per_child": gpus_per_child,
                "max_concurrent": max_concurrent,
                "child_timeout": child_timeout,
                "workers_per_child": workers_per_child,
                "data_parallel": data_parallel,
                "dp_options": parse_assignments(dp_option, "--dp-option") if dp_option else None,
            },
            space_option,
            controller_option,
            config,
        )
        if resume_ref is not None and ws_option:  # a resumed run keeps its stored settings, -W's included
            raise UsageError(f"--resume continues run {resume_ref} with its stored settings; drop -W")
        flags = with_weight_sharing(flags, weight_sharing, ws_option)
        store = open_store(storage, create=resume_ref is None)
        resume = None if resume_ref is None else run_id_of(store, resume_ref)
        if dashboard_port is not None and not dashboard:  # it was ignored
            raise UsageError("--dashboard-port is the port of --dashboard; add --dashboard")
        if dashboard:
            start_dashboard(stack, store.url, 8080 if dashboard_port is None else dashboard_port)
        route_ray_logs(LOG_DIR / f"ray-{os.getpid()}.log")
        from l2l.runs.driver import as_stop, stop_on_sigterm, stop_signal

        stop_on_sigterm()  # before Ray starts (it keeps this handler): a SIGTERM then stops the command cleanly
        try:  # seconds for Ray to start, a minute for an optimizer suite's first reference: said, not silent
            with ExitStack() if quiet else console.status("starting: the executor, then what the space measures first"):
                run = open_run(store, flags, resume)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM while the executor started: no child ran
            err_console.print(f"[yellow]stopped before the search began{'' if resume else ': nothing recorded'}[/]")
            raise typer.Exit(128 + stop_signal(as_stop(exc))) from None
        except Exception as exc:
            say_ray_log(exc)
            raise
        route_ray_logs(run_log_file(LOG_DIR, store, run.run_id))
        cfg = run.config
        size = f"epochs={run.ws.epochs}" if cfg.weight_sharing is not None else f"children={cfg.children}"
        if cfg.weight_sharing is not None:
            done = len(store.epochs(run.run_id))
            again = f" after its {done} epochs: deriving" if done >= run.ws.epochs else f" at epoch {done + 1}"
        else:
            again = f", {run.requeued} {'child' if run.requeued == 1 else 'children'} re-queued"
        console.print(
            f"run [bold]{run.run_id}[/]: space={cfg.space} strategy={cfg.strategy} {size} batch={cfg.batch} "
            f"seed={cfg.seed} store={store.label}" + (f" (resumed{again})" if resume is not None else ""),
            highlight=False,
        )
        move = getattr(run, "moved", None)
        if move:
            was = {k: "(default)" if v is None else v for k, v in move["from"].items()}
            changes = ", ".join(f"{k} {was[k]} -> {v}" for k, v in move["to"].items())
            console.print(f"run {run.run_id} moved: {changes} (recorded with the run)", highlight=False)
        for warning in suite_warnings(run.space) if cfg.space == "optimizer" else ():
            err_console.print(f"[yellow]warning: {escape(warning)}[/]", highlight=False)
        for note in start_notes(store, cfg, run.run_id) if resume is None else ():  # with the run's settings
            console.print(f"note: {escape(note)}", highlight=False)
        where = getattr(run, "executor", None) and getattr(run.executor, "where", None)
        if where:
            console.print(escape(where), highlight=False)
        try:
            if cfg.weight_sharing is not None:
                run_weight_sharing(store, run, quiet)
            else:
                run_shown(run, SearchProgress(run.run_id, cfg.children, store, quiet, run.space))
        except typer.Exit:  # Ctrl-C: the run is interrupted and resumable, whether or not a child finished
            raise
        except Exception as exc:
            # a new run that failed before any child (or a weight-sharing run's first epoch) finished is deleted
            if resume is None and discard_unstarted(store, run.run_id):
                what = "child" if cfg.weight_sharing is None else "epoch"
                exc.add_note(f"run {run.run_id} was removed: no {what} finished, so it holds nothing to resume")
            else:
                say_ray_log(exc)
                from l2l.runs.store import StoreError

                lost = isinstance(exc, StoreError)  # the store, not the cluster: the same head will do
                joined = (
                    " --address HOST:PORT" if cfg.executor_options.get("address") not in EMBEDDED and not lost else ""
                )
                kept = "" if lost else f"run {run.run_id} keeps what it recorded; "
                exc.add_note(
                    f"{kept}once the cause is fixed, continue it with "
                    f"`l2l search --resume {run.run_id}{storage_flag(store)}{joined}`"
                )
            raise
        if cfg.weight_sharing is None:
            print_summary(store, run.run_id, run.space)


def run_shown(run: Any, display: Any) -> None:
    """Run a search under its live display; Ctrl-C leaves it resumable and ends the command with 130 (SIGTERM:
    143, as a shell reports a command its signal ended)."""
    from l2l.runs.search import SearchInterrupted

    run.listener = display.on_event
    try:
        with display:
            run.run()
    except SearchInterrupted as exc:
        err_console.print(f"[yellow]{escape(str(exc) + storage_flag(run.store))}[/]", highlight=False)
        raise typer.Exit(128 + exc.signal) from None


def with_weight_sharing(flags: SearchFlags, on: bool, ws_option: list[str] | None) -> SearchFlags:
    """The flags with ``--weight-sharing`` (or a config file's ``[weight_sharing]``) and ``-W`` folded in."""
    import dataclasses

    from l2l.runs.config import load_config_file

    settings = parse_assignments(ws_option or [], "--ws-option")
    on = on or bool(settings and flags.config and load_config_file(flags.config).get("weight_sharing") is not None)
    if settings and not on:
        raise UsageError("-W (--ws-option) sets a weight-sharing search; add --weight-sharing")
    if not on:
        return flags
    return dataclasses.replace(flags, weight_sharing=settings)


def open_run(store: Store, flags: SearchFlags, resume: int | None) -> Any:
    """A new run from the merged settings, or the stored run ``resume`` (which takes no settings)."""
    from l2l.runs.config import sharing_conflicts
    from l2l.runs.search import Search, SearchConfig
    from l2l.runs.weight_sharing import WeightSharingSearch

    if resume is None:
        settings = flags.settings()
        sharing = settings.get("weight_sharing") is not None  # from -W or the config file
        ignored = sharing_conflicts(settings) if sharing else []
        if ignored:
            given = set(sharing_conflicts({**flags.given, "executor_options": flags.executor_options}))
            options = settings.get("executor_options") or {}
            keys = {n: {"dp-option": "dp_options"}.get(n, n.replace("-", "_")) for n in ignored}  # as the file has it
            keys = {n: f"executor_options.{k}" if k in options else k for n, k in keys.items()}
            named = [f"--{n}" if n in given else f"{keys[n]} (in {flags.config})" for n in ignored]
            raise UsageError(
                f"a weight-sharing search runs in this process for its -W epochs: {', '.join(named)} "
                f"{'does' if len(ignored) == 1 else 'do'} not apply to it; drop {'it' if len(named) == 1 else 'them'}"
            )
        config = SearchConfig.from_json({**(SHARING_DEFAULTS if sharing else DEFAULTS), **settings})
        if config.weight_sharing is not None:
            return WeightSharingSearch.start(store, config)
        return Search.start(store, config)
    extra = flags.resume_conflicts(store.get_run(resume).config)
    if extra:  # where a plain run executes may change; a weight-sharing one runs here
        movable = store.get_run(resume).config.get("weight_sharing") is None
        moving = ", ".join(f"--{k.replace('_', '-')}" for k in MOVABLE)
        where = f" (where it runs may change: {moving})" if movable else ""
        raise UsageError(
            f"--resume continues run {resume} with its stored settings; drop --{', --'.join(extra)}{where}"
        )
    if store.get_run(resume).config.get("weight_sharing") is not None:
        if flags.moves():
            raise UsageError(f"run {resume} is a weight-sharing search: it runs in this process, not on Ray")
        return WeightSharingSearch.resume(store, resume)
    return Search.resume(store, resume, listener=None, moves=flags.moves())


def run_weight_sharing(store: Store, run: Any, quiet: bool) -> None:
    """Run a weight-sharing search with its progress bar (epochs, shared loss, mean reward, entropy), then
    say what it derived."""
    from l2l.runs.cli.progress import SharingProgress

    run_shown(run, SharingProgress(run.run_id, run.ws.epochs, store, quiet))
    print_derived(store, run)
