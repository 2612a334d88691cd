"""DistBelief's training modes for one child on Ray (Dean et al., "Large Scale Distributed Deep Networks", 2012).

``--workers-per-child K --data-parallel MODE`` trains each child on K workers:

- ``sync``: K replicas in a Ray placement group (spread over the nodes) run `torch.distributed` (gloo on the
  CPU, NCCL when each has a GPU), averaging gradients every batch (`l2l.runs.distributed`).
- ``downpour``: Downpour SGD. The parameters live in S parameter-server shards (Ray actors), each applying
  the gradients pushed to it with its own optimizer (Adagrad by default); K replicas take minibatches as
  they finish the last ones, fetch parameters every ``n_fetch`` steps and push accumulated gradients every
  ``n_push`` steps, without waiting for each other (`l2l.runs.downpour`).
- ``sandblaster``: Sandblaster L-BFGS. A coordinator holds the L-BFGS state; the loss and gradient over the
  full batch are summed from many small shards computed by the workers, handed out as workers finish, with
  backup copies of the last shards (`l2l.runs.sandblaster`).

The modes plug in through `l2l.nas.distbelief` (a `TrainingEngine` the training loop hands its epochs to),
so every space whose children train with `l2l.nas.train` can use them unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from l2l.search_spaces.typed import OptionTypeError, coerce

MODES = ("sync", "downpour", "sandblaster")


def _factors(value: Any) -> tuple[float, ...]:
    """``"1,1,1,3"`` (or a list) as per-worker slowdown factors."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(float(v) for v in items)


# DataParallel fields that ``--dp-option KEY=VALUE`` may set, with what reads each value
OPTION_TYPES: dict[str, Any] = {
    "shards": int,
    "n_fetch": int,
    "n_push": int,
    "max_staleness": int | None,  # `none`: no limit, as the field's default
    "server_optimizer": str,
    "server_lr": float | None,
    "unit_batches": int,
    "snapshot_every": int,
    "work_units": int,
    "lbfgs_lr": float,
    "lbfgs_iters": int,
    "history_size": int,
    "line_search": str,
    "spread": str,
    "slow": _factors,
}


class DataParallelError(ValueError):
    """A data-parallel setting is out of range or unknown."""


# the options only one mode reads (the rest, spread, slow, cpus, gpus, apply to every mode)
MODE_OPTIONS = {
    "downpour": (
        "shards", "n_fetch", "n_push", "max_staleness", "server_optimizer", "server_lr", "unit_batches",
        "snapshot_every",
    ),
    "sandblaster": ("work_units", "lbfgs_lr", "lbfgs_iters", "history_size", "line_search"),
}  # fmt: skip


@dataclass(frozen=True)
class DataParallel:
    """How the K workers of one child train it together (the mode and its settings); small, sent with each child."""

    mode: str = "sync"
    workers: int = 1
    # downpour
    shards: int = 2  # parameter-server shards
    n_fetch: int = 1  # a replica fetches the parameters every n_fetch steps
    n_push: int = 1  # and pushes its accumulated gradients every n_push steps
    max_staleness: int | None = None  # a shard drops a gradient computed on parameters older than this
    server_optimizer: str = "auto"  # a torch.optim class by name, "child" (the child's own optimizer), or "auto"
    server_lr: float | None = None  # None: the server optimizer's own default (the child's for `child`)
    unit_batches: int = 4  # minibatches per work unit handed to a replica
    snapshot_every: int = 8  # shards are snapshotted after this many work units
    # sandblaster
    work_units: int = 0  # shards of the full batch per gradient (0: 4 per worker)
    lbfgs_lr: float = 1.0
    lbfgs_iters: int = 5  # L-BFGS iterations per epoch
    history_size: int = 10
    line_search: str = "strong_wolfe"  # or "none"
    # both: "spread" the workers over nodes (DistBelief's machines) or "pack" them
    spread: str = "spread"
    # per-worker slowdown factors (1: normal; 3: three times slower), for straggler experiments
    slow: tuple[float, ...] = field(default=())
    cpus: float = 1.0  # per worker
    gpus: float = 0.0  # per worker
    record: bool = False  # record mode and throughput even for one worker (--data-parallel given)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DataParallelError(f"unknown --data-parallel {self.mode!r}; known: {', '.join(MODES)}")
        for name in ("workers", "shards", "n_fetch", "n_push", "unit_batches", "snapshot_every", "lbfgs_iters"):
            if getattr(self, name) < 1:
                raise DataParallelError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.work_units < 0 or self.history_size < 1:
            raise DataParallelError(f"work_units must be >= 0 and history_size >= 1, got {self}")
        if self.max_staleness is not None and self.max_staleness < 0:
            raise DataParallelError(f"max_staleness must be >= 0, got {self.max_staleness}")
        if self.line_search not in ("strong_wolfe", "none"):
            raise DataParallelError(f"line_search must be strong_wolfe or none, got {self.line_search!r}")
        if self.spread not in ("spread", "pack"):
            raise DataParallelError(f"spread must be spread or pack, got {self.spread!r}")
        if any(not s >= 1 for s in self.slow):
            raise DataParallelError(f"slow factors must be >= 1, got {self.slow}")
        if self.server_optimizer not in ("child", "auto"):
            from l2l.nas.distbelief import optimizer_by_name

            try:
                optimizer_by_name(self.server_optimizer)
            except ValueError as exc:
                raise DataParallelError(str(exc)) from None

    @staticmethod
    def parse(mode: str, workers: int, options: Mapping[str, Any] | None = None, **extra: Any) -> DataParallel:
        """From the CLI or a config file: ``options`` maps `OPTION_TYPES` keys to values, read as every setting is
        (`l2l.search_spaces.typed.coerce`: a whole float is an integer; ``slow`` also takes "1,1,3")."""
        values: dict[str, Any] = {}
        for name, value in (options or {}).items():
            key = name.replace("-", "_")
            kind = OPTION_TYPES.get(key)
            if kind is None:
                raise DataParallelError(f"unknown data-parallel option {key!r}; known: {', '.join(OPTION_TYPES)}")
            label = f"data-parallel option {key}"
            try:  # as every other setting is read: 2.0 is 2, 2.5 is no whole number, nan no number
                values[key] = _factors(value) if kind is _factors else coerce(label, value, kind)
            except OptionTypeError as exc:
                raise DataParallelError(str(exc)) from None
            except (TypeError, ValueError):
                raise DataParallelError(f"{label}={value!r} is not comma-separated numbers") from None
        for key in values:
            owner = next((m for m, keys in MODE_OPTIONS.items() if key in keys), None)
            if owner is not None and owner != mode:
                raise DataParallelError(
                    f"data-parallel option {key} applies to --data-parallel {owner}, not {mode}"
                    + ("" if extra.get("record", True) else " (no --data-parallel given: sync)")
                )
        if len(values.get("slow", ())) > workers:
            raise DataParallelError(
                f"data-parallel option slow gives {len(values['slow'])} factors for {workers} worker(s) per child"
            )
        return DataParallel(mode=mode, workers=workers, **values, **extra)

    @property
    def actors(self) -> bool:
        """Whether the workers are Ray actors of their own (every mode with K > 1)."""
        return self.workers > 1 or self.mode != "sync"

    def slowdown(self, worker: int) -> float:
        """How many times slower than normal worker ``worker`` is made to run."""
        return self.slow[worker] if worker < len(self.slow) else 1.0

    def summary(self) -> dict[str, Any]:
        """The settings a child records with its result (those of its mode)."""
        keys = {
            "sync": (),
            "downpour": ("shards", "n_fetch", "n_push", "max_staleness", "server_optimizer", "unit_batches"),
            "sandblaster": ("work_units", "lbfgs_lr", "lbfgs_iters", "history_size", "line_search"),
        }[self.mode]
        out = {"mode": self.mode, "workers": self.workers, **{k: getattr(self, k) for k in keys}}
        if self.slow:
            out["slow"] = list(self.slow)
        return out


def ray_module() -> Any:
    """Ray, imported when a data-parallel child starts (never for ``l2l --help``)."""
    import ray

    return ray


def worker_group(parallel: DataParallel, bundles: int) -> Any:
    """A placement group of ``bundles`` workers' resources, spread over the nodes (or packed), once ready."""
    from ray.util.placement_group import placement_group

    bundle: dict[str, float] = {"CPU": parallel.cpus}
    if parallel.gpus > 0:
        bundle["GPU"] = parallel.gpus
    strategy = "SPREAD" if parallel.spread == "spread" else "PACK"
    group = placement_group([dict(bundle) for _ in range(bundles)], strategy=strategy)
    ready = ray_module().wait([group.ready()], timeout=120)[0]
    if not ready:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(group)
        raise RuntimeError(f"the cluster cannot place {bundles} workers of {bundle} ({strategy}) within 120 s")
    return group


def in_bundle(actor_class: Any, group: Any, index: int, parallel: DataParallel) -> Any:
    """``actor_class`` with the options that put it into bundle ``index`` of ``group``."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=index)
    return actor_class.options(
        num_cpus=parallel.cpus, num_gpus=parallel.gpus, scheduling_strategy=strategy, max_restarts=0
    )


def is_death(exc: BaseException) -> bool:
    """Whether ``exc`` says a Ray actor (or its node) died, rather than that the code it ran raised."""
    e = ray_module().exceptions
    return isinstance(exc, (e.RayActorError, e.WorkerCrashedError, e.NodeDiedError, e.ObjectLostError))


@dataclass
class Events:
    """What happened during a child's distributed training, for its record: deaths, restores, backups."""

    started: float = field(default_factory=time.monotonic)
    log: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, **what: Any) -> None:
        """Note one event (``kind``: replica_replaced, shard_restored, worker_replaced, ...)."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.log) < 50:  # a record stays small, whatever happens
            self.log.append({"event": kind, "t": round(time.monotonic() - self.started, 3), **what})


def engine_for(parallel: DataParallel) -> Any:
    """The `TrainingEngine` of a Downpour or Sandblaster child."""
    if parallel.mode == "downpour":
        from l2l.runs.downpour import Downpour

        return Downpour(parallel)
    if parallel.mode == "sandblaster":
        from l2l.runs.sandblaster import Sandblaster

        return Sandblaster(parallel)
    raise DataParallelError(f"mode {parallel.mode!r} trains without an engine")


def with_record(result: Any, record: Mapping[str, Any]) -> Any:
    """``result`` with ``record`` (mode, workers, nodes, throughput, events) as ``info["data_parallel"]``."""
    info = dict(result.info)
    info["data_parallel"] = dict(record)
    return dataclasses.replace(result, info=info)


def run_engine_child(space: Any, task: Any, parallel: DataParallel) -> Any:
    """Evaluate ``task`` with its training done Downpour- or Sandblaster-style; the result records the mode,
    workers, nodes, throughput and what happened (deaths, restores, backups, staleness)."""
    from l2l.nas.distbelief import recording, use_engine
    from l2l.runs.executors import run_child

    asked = task.ctx.device
    # the coordinator holds no GPU (its workers hold the child's resources) and the workers compute on the CPU
    task = dataclasses.replace(task, ctx=dataclasses.replace(task.ctx, device="cpu"))
    engine = engine_for(parallel)
    with use_engine(engine), recording() as rec:
        result = run_child(space, task)
    record: dict[str, Any] = {**parallel.summary(), **engine.record(), **throughput(rec)}
    if asked != "cpu":
        record["device_notice"] = f"--device {asked} asked for; {parallel.mode} workers compute on the CPU"
    if "examples_computed" in record:  # Sandblaster computes the full batch several times an epoch
        record["examples"] = record.pop("examples_computed")
        record["epoch_examples"] = record.pop("epoch_computed")
        record["examples_per_s"] = record["examples"] / rec.seconds if rec.seconds else 0.0
    if not rec.seconds:
        record["notice"] = "the space's children do not train with l2l's training loops: trained in one process"
    return with_record(result, record)


def throughput(rec: Any) -> dict[str, Any]:
    """A `l2l.nas.distbelief.TrainingRecord` as a child records it: examples, examples/s, and per epoch the
    examples processed and seconds trained so far (convergence against examples and time)."""
    return {
        "examples": rec.examples,
        "examples_per_s": rec.examples / rec.seconds if rec.seconds else 0.0,
        "train_s": rec.seconds,
        "epoch_examples": list(rec.epoch_examples),
        "epoch_s": list(rec.epoch_s),
    }
