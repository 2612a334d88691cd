"""The Ray executor: children run as Ray tasks on the CPUs and GPUs of one machine or a cluster.

The driver alone talks to the store; workers get the space (and the data it declares, put in Ray's
object store once per run) and return a `Result`. A child runs on the device Ray assigned to it:
CUDA when it was given a GPU (possibly a fraction of one), the CPU otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import deque
from typing import Any

from runs.executors import ChildTask, Executor, ExecutorError, run_child
from search_spaces.api import Result, SearchSpace
from search_spaces.registry import FILE_PLUGIN_PREFIX

POLL_S = 0.5


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency; this guards broken installs
        raise ExecutorError(f"the Ray executor needs the 'ray' package: {exc}") from exc
    return ray


def _child_on_worker(
    space: SearchSpace, shared: dict[str, Any], task: ChildTask, queued_at: float, workers: int = 1
) -> Result:
    """Runs inside a Ray worker: pick the assigned device, evaluate, record where and when."""
    import ray
    import torch

    space.use_shared_data(shared)
    gpus = ray.get_gpu_ids()
    device = task.ctx.device
    if gpus and torch.cuda.is_available():
        device = "cuda"  # Ray set CUDA_VISIBLE_DEVICES to the assigned GPU(s): cuda means cuda:0 of those
    elif device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    ctx = dataclasses.replace(task.ctx, device=device)
    if workers > 1:
        from runs.distributed import run_data_parallel

        result = run_data_parallel(space, dataclasses.replace(task, ctx=ctx), workers)
    else:
        result = run_child(space, dataclasses.replace(task, ctx=ctx))
    info = dict(result.info)
    info.update(node=ray.get_runtime_context().get_node_id(), queued=queued_at, gpu_ids=[str(g) for g in gpus])
    return dataclasses.replace(result, info=info)


class RayExecutor(Executor):
    """Children as Ray tasks, at most ``capacity`` at once; failures of workers and timeouts are recorded.

    With no ``address`` an embedded Ray instance sized to this machine starts (and stops with the
    executor); ``address="auto"`` or ``"host:port"`` joins a cluster started with ``ray start``.
    A worker process that dies is retried by Ray up to ``max_retries`` times, then the child fails.
    A child running longer than ``child_timeout`` seconds is cancelled (its worker killed) and failed.
    """

    name = "ray"

    def __init__(
        self,
        device: str = "cpu",
        address: str | None = None,
        cpus_per_child: float = 1.0,
        gpus_per_child: float = 0.0,
        max_concurrent: int | None = None,
        child_timeout: float | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
        prefetch: int | None = None,
        workers_per_child: int = 1,
    ) -> None:
        if cpus_per_child < 0 or gpus_per_child < 0 or (cpus_per_child == 0 and gpus_per_child == 0):
            raise ExecutorError(
                f"--cpus-per-child and --gpus-per-child must be >= 0 and not both 0, got {cpus_per_child}, "
                f"{gpus_per_child}"
            )
        if gpus_per_child > 1 and gpus_per_child != int(gpus_per_child):
            raise ExecutorError(f"--gpus-per-child above 1 must be a whole number, got {gpus_per_child}")
        if max_concurrent is not None and max_concurrent < 1:
            raise ExecutorError(f"--max-concurrent must be >= 1, got {max_concurrent}")
        if child_timeout is not None and not child_timeout > 0:
            raise ExecutorError(f"--child-timeout must be > 0 seconds, got {child_timeout}")
        if workers_per_child < 1:
            raise ExecutorError(f"--workers-per-child must be >= 1, got {workers_per_child}")
        self.workers_per_child = workers_per_child
        cpus_per_child, gpus_per_child = cpus_per_child * workers_per_child, gpus_per_child * workers_per_child
        if prefetch is not None and prefetch < 0:
            raise ExecutorError(f"prefetch must be >= 0, got {prefetch}")
        if max_retries < 0:
            raise ExecutorError(f"max_retries must be >= 0, got {max_retries}")
        ray = _ray()
        self.device = device
        self.child_timeout = child_timeout
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    num_cpus=num_cpus if address is None else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "an embedded Ray instance"
                raise ExecutorError(f"cannot start or join {where}: {exc}") from exc
            self._owns = address is None
        resources = ray.cluster_resources()
        fits = []
        if cpus_per_child > 0:
            fits.append(math.floor(resources.get("CPU", 0.0) / cpus_per_child + 1e-9))
        if gpus_per_child > 0:
            if resources.get("GPU", 0.0) <= 0:
                raise ExecutorError(f"--gpus-per-child {gpus_per_child} asked for, but the Ray cluster has no GPU")
            fits.append(math.floor(resources.get("GPU", 0.0) / gpus_per_child + 1e-9))
        fit = min(fits)
        if fit < 1:
            raise ExecutorError(
                f"one child needs {cpus_per_child} CPU and {gpus_per_child} GPU; the cluster has "
                f"{resources.get('CPU', 0)} CPU and {resources.get('GPU', 0)} GPU"
            )
        self._capacity = min(fit, max_concurrent) if max_concurrent else fit
        # children handed to Ray beyond the running ones wait in Ray's queue, so a worker that
        # finishes starts the next child at once instead of waiting for the driver's round trip
        # (only when the resources cap concurrency: below that cap, Ray would start the queued ones too)
        limited = max_concurrent is not None and max_concurrent < fit
        self._prefetch = 0 if limited else (self._capacity if prefetch is None else prefetch)
        self._remote = ray.remote(_child_on_worker).options(
            num_cpus=cpus_per_child, num_gpus=gpus_per_child, max_retries=max_retries, retry_exceptions=False
        )
        self._space_refs: dict[int, tuple[SearchSpace, Any, Any]] = {}
        self._queue: deque[tuple[SearchSpace, ChildTask, float]] = deque()
        self._running: dict[Any, tuple[ChildTask, float]] = {}  # ObjectRef -> (task, started at; -1 queued)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def depth(self) -> int:
        return self._capacity + self._prefetch

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def _refs(self, space: SearchSpace) -> tuple[Any, Any]:
        entry = self._space_refs.get(id(space))
        if entry is None or entry[0] is not space:
            ray = _ray()
            module = sys.modules.get(type(space).__module__)
            if module is not None and module.__name__.startswith(FILE_PLUGIN_PREFIX):
                # a space loaded from path/file.py:Class is not importable on workers: ship its code
                ray.cloudpickle.register_pickle_by_value(module)
            entry = (space, ray.put(space), ray.put(space.shared_data()))  # once per run, not per child
            self._space_refs[id(space)] = entry
        return entry[1], entry[2]

    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        self._queue.append((space, task, time.time()))
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self.depth:
            space, task, queued_at = self._queue.popleft()
            space_ref, shared_ref = self._refs(space)
            ref = self._remote.remote(space_ref, shared_ref, task, queued_at, self.workers_per_child)
            self._running[ref] = (task, -1.0)  # not started yet: waiting in Ray's queue
        self._clock_starts()

    def _clock_starts(self) -> None:
        """Start the timeout clock of the children that now hold a worker: Ray runs queued tasks of one
        shape in submission order, so those are the oldest ``capacity`` handed over."""
        now = time.time()
        for ref in list(self._running)[: self._capacity]:
            task, started = self._running[ref]
            if started < 0:
                self._running[ref] = (task, now)

    def next_result(self) -> tuple[ChildTask, Result]:
        ray = _ray()
        if not self._running:
            raise ExecutorError("next_result called with no child pending")
        while True:
            wait = POLL_S if self.child_timeout is not None else None
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=wait)
            if ready:
                ref = ready[0]
                task, _launched = self._running.pop(ref)
                self._clock_starts()
                result = self._get(ref, task)
                self._fill()
                return task, result
            expired = self._expired()
            if expired is not None:
                self._fill()
                return expired

    def _get(self, ref: Any, task: ChildTask) -> Result:
        ray = _ray()
        try:
            return ray.get(ref)  # type: ignore[no-any-return]
        except ray.exceptions.TaskCancelledError:
            return Result.failed("cancelled")
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as e:
            tries = self.max_retries + 1
            return Result.failed(
                f"the worker running child {task.number} died {tries} time(s): {type(e).__name__}: {e}"
            )
        except ray.exceptions.RayError as exc:
            return Result.failed(f"Ray could not run child {task.number}: {type(exc).__name__}: {exc}")

    def _expired(self) -> tuple[ChildTask, Result] | None:
        assert self.child_timeout is not None
        now = time.time()
        for ref, (task, launched) in list(self._running.items()):
            if launched >= 0 and now - launched > self.child_timeout:
                _ray().cancel(ref, force=True)
                del self._running[ref]
                return task, Result.failed(
                    f"child {task.number} ran past --child-timeout {self.child_timeout:g}s and was cancelled",
                    wall_time=now - launched,
                )
        return None

    def cancel_all(self) -> list[ChildTask]:
        ray = _ray()
        dropped = [task for _, task, _ in self._queue] + [task for task, _ in self._running.values()]
        # An embedded instance is about to be shut down, which stops its workers: no cancel needed.
        # On a cluster, cancel gently (KeyboardInterrupt in the child): a forced cancel that races
        # with a child finishing trips an internal check of Ray's core worker and kills the driver.
        if not self._owns:
            for ref in self._running:
                try:
                    ray.cancel(ref, force=False)
                except Exception:
                    pass
        self._queue.clear()
        self._running.clear()
        return dropped

    def shutdown(self) -> None:
        self.cancel_all()
        self._space_refs.clear()
        if self._owns:
            _ray().shutdown()
            self._owns = False
