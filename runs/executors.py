"""Executors run children and hand back results; `run_child` is the one place a child's failure is caught."""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from l2l.search_spaces.api import Context, Result, SearchSpace, Spec

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
    """Evaluate one child, turning any exception or non-finite reward into a failed `Result` with its reason.

    Timing and placement (worker, device, started, finished, wall_time) are added to ``info``.
    """
    started = time.time()
    # Small children gain nothing from intra-op threads, and several threads per child on a shared
    # CPU oversubscribe it (10x slower when another process is busy): one thread unless asked.
    torch.set_num_threads(max(1, task.ctx.threads))
    try:
        result = space.evaluate(task.spec, task.ctx)
        if not isinstance(result, Result):
            result = Result.failed(f"evaluate returned {type(result).__name__}, not a Result")
        elif result.status == "done" and not math.isfinite(result.reward):
            result = Result.failed(f"reward is {result.reward}", **dict(result.info))
    except Exception as exc:  # the executor boundary: every child failure is recorded, never raised
        text = "".join(traceback.format_exception(exc))
        summary = f"{type(exc).__name__}: {exc}"
        if len(text) > MAX_TRACEBACK_CHARS:
            text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
        result = Result.failed(f"{summary}\n{text}")
    finished = time.time()
    info = dict(result.info)
    info.update(
        worker=worker_name(), device=task.ctx.device, started=started, finished=finished, wall_time=finished - started
    )
    return Result(
        reward=result.reward,
        val_loss=result.val_loss,
        val_acc=result.val_acc,
        test=result.test,
        cost=result.cost,
        curves=result.curves,
        status=result.status,
        error=result.error,
        info=info,
    )


class Executor(ABC):
    """Takes child tasks and returns their results as they finish (in any order)."""

    name: str = ""

    @property
    @abstractmethod
    def capacity(self) -> int:
        """How many children can run at once."""

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
    def depth(self) -> int:
        """How many children to keep submitted so no worker waits for the driver (capacity and a queue)."""
        return self.capacity

    @property
    @abstractmethod
    def pending(self) -> int:
        """Submitted children whose results have not been returned yet."""

    @property
    def idle(self) -> int:
        """Workers with no child to run, not even one waiting for them: they need one now."""
        return max(0, self.capacity - self.pending)

    def cancel_all(self) -> list[ChildTask]:
        """Drop every pending child (on Ctrl-C); returns those dropped."""
        return []

    def finishing(self) -> None:  # noqa: B027 - a no-op hook that executors with workers override
        """No more children will be submitted: workers that fall idle may run backups of waiting ones."""

    def prepare(self, space: SearchSpace) -> None:  # noqa: B027 - a no-op hook that executors with workers override
        """Children will come from ``space``: workers may set it up (fetch it and its data) before the first one."""

    def wait_ready(self, timeout: float | None = None) -> float:
        """Start the workers now rather than at the first child; returns the seconds waited."""
        return 0.0

    def shutdown(self) -> None:  # noqa: B027 - a no-op hook that executors with workers override
        """Release workers."""


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
    def capacity(self) -> int:
        return 1

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


EXECUTOR_NAMES = ("local", "ray")
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
)


def make_executor(name: str, device: str = "cpu", options: Mapping[str, Any] | None = None) -> Executor:
    """The executor called ``name`` with its options (those of `RayExecutor` for "ray")."""
    opts = dict(options or {})
    if name == "local":
        if opts:
            raise ExecutorError(
                f"executor options {sorted(opts)} need --executor ray; the local executor runs children one at a "
                "time in this process and takes none"
            )
        return LocalExecutor(device=device)
    if name == "ray":
        unknown = sorted(set(opts) - set(RAY_OPTIONS))
        if unknown:
            raise ExecutorError(f"unknown Ray executor option(s) {unknown}; known: {', '.join(RAY_OPTIONS)}")
        from l2l.runs.ray_executor import RayExecutor

        return RayExecutor(device=device, **opts)
    raise ExecutorError(f"unknown executor {name!r}; known: {', '.join(EXECUTOR_NAMES)}")
