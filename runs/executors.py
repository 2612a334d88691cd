"""Executors run children and hand back results; `run_child` is the one place a child's failure is caught."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from l2l.runs.config import flag_spelling
from l2l.search_spaces.api import Context, Result, SearchSpace, Spec
from l2l.search_spaces.results import checked_result

MAX_TRACEBACK_CHARS = 4000


class ExecutorError(RuntimeError):
    """An executor was misused or cannot start."""


@dataclass(frozen=True)
class ChildTask:
    """One child to evaluate: its number in the run, its spec, and its context (seed, device, budget)."""

    number: int
    spec: Spec
    ctx: Context


def worker_name() -> str:
    """host:pid of the process evaluating a child."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_child(space: SearchSpace, task: ChildTask) -> Result:
    """Evaluate one child, turning any exception, non-finite reward or result the store cannot hold into a
    failed `Result` with its reason. Timing and placement (worker, device, started, finished, wall_time)
    go to ``runtime``, apart from the space's own ``info``."""
    started = time.time()
    limit_threads(max(1, task.ctx.threads))
    stops: list[int] = []  # the epoch count at which the pruner first said stop
    ctx = task.ctx
    if ctx.report is not None:
        asked = ctx.report

        def report(epoch: int, value: float) -> bool:
            stop = asked(epoch, value)
            if stop and not stops:
                stops.append(epoch + 1)
            return stop

        ctx = dataclasses.replace(ctx, report=report)
    try:
        epochs = ctx.budget.get("epochs", space.options.get("epochs"))  # a full training's, where it is known
        result = pruned(checked_result(space.evaluate(task.spec, ctx)), stops, epochs)
    except (Exception, SystemExit) as exc:  # the executor boundary: every child failure is recorded, never raised
        # (a space that calls sys.exit too; only Ctrl-C, KeyboardInterrupt, goes on up to stop the search)
        text = ANSI.sub("", "".join(traceback.format_exception(exc)))
        summary = failure_summary(exc)
        if len(text) > MAX_TRACEBACK_CHARS:
            text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
        result = Result.failed(f"{summary}\n{text}")
    finished = time.time()
    runtime = dict(
        worker=worker_name(), device=task.ctx.device, started=started, finished=finished, wall_time=finished - started
    )
    return dataclasses.replace(result, runtime=runtime)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Ray colours its task names in what it raises


def failure_summary(exc: BaseException) -> str:
    """The one-line reason of a child's exception: the innermost of the errors Ray wraps around a remote
    task's own (a data-parallel child's replica), without Ray's terminal colours."""
    inner, seen = exc, {id(exc)}
    try:
        while isinstance(cause := getattr(inner, "cause", None), BaseException) and id(cause) not in seen:
            inner = cause
            seen.add(id(cause))
        return ANSI.sub("", f"{type(inner).__name__}: {inner}").strip()
    except Exception:  # an exception whose cause or text raises: its type at least, at the executor boundary
        return type(exc).__name__


def pruned(result: Result, stops: list[int], epochs: Any = None) -> Result:
    """``result`` marked ``info["pruned_at"]`` where the pruner said stop after ``stops[0]`` of a full training's
    ``epochs`` (the space's option or the run's budget) and the space stopped there (no curve goes further)
    without marking it: a plugin's loop that asks `Context.should_stop`, as the plugin docs show, was recorded as
    an ordinary finished child, and its trial told Optuna complete. Where ``epochs`` is not known, or the pruner
    spoke after the last epoch, nothing is marked: a child that trained its whole budget was not pruned."""
    if not stops or not result.ok or result.info.get("pruned_at") is not None:
        return result
    if isinstance(epochs, bool) or not isinstance(epochs, int) or stops[0] >= epochs:
        return result
    if any(len(curve) > stops[0] for curve in result.curves.values()):
        return result  # it asked, and trained on
    return dataclasses.replace(result, info={**result.info, "pruned_at": stops[0]})


class Executor(ABC):
    """Takes child tasks and returns their results as they finish (in any order).

    Every executor submits, hands back results, cancels and shuts down. One with long-lived workers
    may also be a `WorkerPool`, which the search loop uses when it is there.
    """

    name: str = ""

    @property
    def capacity(self) -> int:
        """How many children can run at once: one runs Zoph & Le's batches, more keep workers busy."""
        return 1

    @abstractmethod
    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        """Queue ``task``; it runs now or later, and its result comes from `next_result`."""

    @abstractmethod
    def next_result(self) -> tuple[ChildTask, Result]:
        """Block until one submitted child finishes; return it with its result."""

    def next_results(self) -> list[tuple[ChildTask, Result]]:
        """Block until at least one submitted child finishes; return it and any others already finished."""
        return [self.next_result()]

    @property
    @abstractmethod
    def pending(self) -> int:
        """Submitted children whose results have not been returned yet."""

    @abstractmethod
    def cancel_all(self) -> list[ChildTask]:
        """Drop every pending child (on Ctrl-C); returns those dropped."""

    @abstractmethod
    def shutdown(self) -> None:
        """Drop what is pending and release the workers; calling it again does nothing."""


@runtime_checkable
class WorkerPool(Protocol):
    """An executor whose long-lived workers hold queues: the loop keeps them fed and says when the run ends."""

    @property
    def depth(self) -> int:
        """How many children to keep submitted so no worker waits for the driver (capacity and a queue)."""

    @property
    def idle(self) -> int:
        """Workers with no child to run, not even one waiting for them: they need one now."""

    def prepare(self, space: SearchSpace) -> None:
        """Children will come from ``space``: workers may set it up (fetch it and its data) before the first one."""

    def finishing(self) -> None:
        """No more children will be submitted: workers that fall idle may run backups of waiting ones."""


def to_submit(executor: Executor, left: int) -> int:
    """How many new children a search loop submits to ``executor`` now, of ``left`` still to propose.

    Workers with nothing to run come first, then the queues behind them up to a `WorkerPool`'s depth.
    Once every worker has a child, the queues are topped up in batches of a quarter of the workers: a
    policy pass costs about the same for 1 child as for 8, and the driver's CPU is what the workers
    wait for when many finish at once. A worker left with nothing to run is given a child at once.
    """
    pending, capacity = executor.pending, executor.capacity
    pool = executor if isinstance(executor, WorkerPool) else None
    free = min(max(1, pool.depth if pool is not None else capacity) - pending, left)
    if pending < capacity:
        return min(free, capacity - pending)
    if free < min(max(1, capacity // 4), left) and not (pool is not None and pool.idle):
        return 0
    return free


class LocalExecutor(Executor):
    """Runs each child in this process when its result is asked for: for debugging, tests and small runs.

    Running lazily, one child per `next_result`, means each result is recorded before the next
    child starts, so a crash loses at most the child in flight.
    """

    name = "local"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._queue: deque[tuple[SearchSpace, ChildTask]] = deque()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        self._queue.append((space, task))

    def next_result(self) -> tuple[ChildTask, Result]:
        if not self._queue:
            raise ExecutorError("next_result called with no child pending")
        space, task = self._queue.popleft()
        return task, run_child(space, task)

    def cancel_all(self) -> list[ChildTask]:
        dropped = [task for _, task in self._queue]
        self._queue.clear()
        return dropped

    def shutdown(self) -> None:
        self._queue.clear()


EXECUTOR_NAMES = ("local", "ray")
# the executor options that `l2l search` takes as flags (the others come from a config file only)
FLAGGED = ("address", "cpus_per_child", "gpus_per_child", "max_concurrent", "child_timeout", "workers_per_child",
           "data_parallel", "dp_options")  # fmt: skip
RAY_OPTIONS = (
    "address",
    "cpus_per_child",
    "gpus_per_child",
    "max_concurrent",
    "child_timeout",
    "max_retries",
    "num_cpus",
    "prefetch",
    "workers_per_child",
    "data_parallel",
    "dp_options",
)


def limit_threads(threads: int) -> None:
    """Small children gain nothing from intra-op threads, and several threads per child on a shared CPU
    oversubscribe it (10x slower when another process is busy): one thread unless asked. A worker whose
    spaces never imported torch (a table lookup, a simulator) does not load it for this (a second or more
    per worker process): torch, once a child imports it, starts with the count in the environment."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        os.environ["MKL_DYNAMIC"] = "FALSE"  # as set_num_threads: the count asked, even above the physical cores


def check_device(device: str, here: bool = True) -> None:
    """Refuse, before the first child, a device torch does not know or, when children run ``here`` (in this
    process), one this machine does not have; every child would fail on it, or train on the CPU unasked."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ExecutorError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, mps): {exc}") from None
    if not here or parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ExecutorError(
                f"--device {device}: this machine has no CUDA device (torch sees none); use --device cpu"
            )
        if parsed.index is not None and parsed.index >= count:
            raise ExecutorError(
                f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ExecutorError(f"--device {device}: this machine has no MPS device; use --device cpu")


def make_executor(name: str, device: str = "cpu", options: Mapping[str, Any] | None = None) -> Executor:
    """The executor called ``name`` with its options (those of `RayExecutor` for "ray"), after checking
    ``device`` (`check_device`)."""
    opts = dict(options or {})
    check_device(device, here=name == "local")
    if name == "ray" and device.startswith("cuda") and not opts.get("gpus_per_child"):
        raise ExecutorError(
            f"--device {device} on Ray needs --gpus-per-child (1, or 0.5 for two children per GPU): "
            "a child runs on the GPUs Ray assigns it"
        )
    unknown = sorted(set(opts) - set(RAY_OPTIONS))  # a misspelt key is named as such, whatever the executor
    if unknown and name in EXECUTOR_NAMES:
        raise ExecutorError(f"unknown executor option(s) {unknown}; known (Ray's): {', '.join(RAY_OPTIONS)}")
    if name == "local":
        if opts:
            named = ", ".join(
                f"{k} ({f'--{flag_spelling(k)}' if k in FLAGGED else 'a config file key'})" for k in sorted(opts)
            )
            raise ExecutorError(
                f"executor options {named} need --executor ray; the local executor runs children one at a time in "
                "this process and takes none"
            )
        return LocalExecutor(device=device)
    if name == "ray":
        from l2l.runs.ray_executor import RayExecutor
        from l2l.search_spaces.typed import OptionTypeError, coerce_call

        try:  # a config file's [executor_options] come as TOML typed them, not as the flags' parser did
            opts = coerce_call(RayExecutor, opts, "executor option")
        except OptionTypeError as exc:
            raise ExecutorError(str(exc)) from None
        return RayExecutor(device=device, **opts)
    raise ExecutorError(f"unknown executor {name!r}; known: {', '.join(EXECUTOR_NAMES)}")
