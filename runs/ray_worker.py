"""What runs inside a Ray worker process: the actor that holds a slot and evaluates the children sent to it.

Only `l2l.runs.ray_executor` (the driver side) uses this module; workers import it to build the actor.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from l2l.runs.distbelief import DataParallel, run_engine_child, throughput, with_record
from l2l.runs.executors import ChildTask, ExecutorError, run_child, worker_name
from l2l.runs.secrets import strip_secrets
from l2l.search_spaces.api import Result, SearchSpace


def child_on_worker(
    space: SearchSpace,
    task: ChildTask,
    queued_at: float,
    parallel: DataParallel | int = 1,
    refs: list[Any] | None = None,
) -> Result:
    """Runs inside a Ray worker: pick the assigned device, evaluate (with the child's workers, when it has
    several: ``parallel``), record where and when. ``refs`` are the space's object refs, for sync replicas."""
    import ray

    if isinstance(parallel, int):
        parallel = DataParallel(workers=parallel)
    gpus = ray.get_gpu_ids()
    device, notice = assigned_device(task.ctx.device, [str(g) for g in gpus], cuda_here)
    task = dataclasses.replace(task, ctx=dataclasses.replace(task.ctx, device=device))
    if parallel.mode != "sync":
        result = run_engine_child(space, task, parallel)
    elif parallel.workers > 1 and refs is not None:
        from l2l.runs.distributed import run_sync_on_actors

        result = run_sync_on_actors(refs, task, parallel)
    elif parallel.workers > 1:  # no refs to hand to replicas elsewhere: K processes on this node
        from l2l.runs.distributed import run_data_parallel

        result = run_data_parallel(space, task, parallel.workers)
    elif parallel.record:  # --data-parallel sync with one worker: the baseline of the others, recorded alike
        from l2l.nas.distbelief import recording

        with recording() as rec:
            result = run_child(space, task)
        node = str(ray.get_runtime_context().get_node_id())
        result = with_record(result, {**parallel.summary(), "nodes": [node], **throughput(rec)})
    else:
        result = run_child(space, task)
    runtime = dict(result.runtime)
    runtime.update(node=ray.get_runtime_context().get_node_id(), queued=queued_at, gpu_ids=[str(g) for g in gpus])
    if notice:
        runtime["notice"] = f"{notice} (torch {sys.modules['torch'].__version__} on {socket.gethostname()})"
    elif untrained := untrained_notice(space, result, parallel):
        runtime["notice"] = untrained
    return dataclasses.replace(result, runtime=runtime)


def untrained_notice(space: SearchSpace, result: Result, parallel: DataParallel) -> str | None:
    """What to tell the user when a child given several workers trained in one process: its space does not
    train with l2l's training loops, so the workers had nothing to share (the record says 0 examples)."""
    record = result.info.get("data_parallel") if result.ok else None
    if parallel.workers < 2 or not isinstance(record, dict) or record.get("train_s"):
        return None
    return (
        f"space {space.name!r} does not train with l2l's training loops: --workers-per-child {parallel.workers} "
        f"--data-parallel {parallel.mode} trained each child in one process"
    )


def cuda_here() -> bool:
    """Whether torch has CUDA in this process (imported for the question only when a GPU is involved)."""
    import torch

    return bool(torch.cuda.is_available())


def assigned_device(asked: str, gpus: list[str], cuda_available: Callable[[], bool]) -> tuple[str, str | None]:
    """The device a child runs on, given the device the run asked for, the GPUs Ray assigned and whether torch
    has CUDA here (asked only when a GPU was assigned or a CUDA device asked for: a CPU child of a space that
    never imports torch does not load it); with a note when it is not what was asked or reserved (a CPU-only
    torch under a GPU)."""
    if not gpus and not asked.startswith("cuda"):
        return asked, None
    cuda = cuda_available()
    if gpus and cuda:
        return "cuda", None  # Ray set CUDA_VISIBLE_DEVICES to the assigned GPU(s): cuda means cuda:0 of those
    if gpus:
        return "cpu", f"Ray assigned GPU {', '.join(gpus)}, but torch has no CUDA: the child ran on the CPU"
    if asked.startswith("cuda") and not cuda:
        return "cpu", f"--device {asked} asked for, but torch has no CUDA here and no GPU was assigned: ran on the CPU"
    return asked, None


class SlotActor:
    """A long-lived worker process (a Ray actor) that evaluates the children handed to it, in order.

    The children handed to a slot wait at the actor itself, each call in its own thread (the actor
    runs as many calls at once as a slot holds children), and run one at a time in the order they
    were sent: the next child starts the moment one ends, while Ray returns the finished one's
    result, with no round trip through the driver or Ray's dispatch in between. The space and its
    shared data are fetched from the object store once (`prepare`, or the first child) and kept;
    once the driver knows a slot holds them, its calls name the space by key instead of passing the
    object refs again (a call with refs among its arguments costs Ray more: 0.59 against 0.52 ms per
    call, submitted and returned, measured with one actor on an idle machine).
    """

    def __init__(self) -> None:
        strip_secrets()  # a node started in a shell holding the store's URL passes it on: children never see it
        self._spaces: dict[str, SearchSpace] = {}  # by the hex id of the space's object ref
        self._refs: dict[str, list[Any]] = {}  # the refs each space came from: a child's replicas fetch it too
        self._loading = threading.Lock()
        self._turn = threading.Condition()
        self._next = 0  # the sequence number of the call whose child runs next
        # The next child's thread may wait for the GIL while the previous call's thread returns its
        # result through Ray; by default it asks for it only after 5 ms. A shorter interval bounds that
        # wait. (Measured with and without, the gaps at 32 workers did not differ clearly: they come
        # from the CPU being busy, not the GIL. Kept because the published table was measured with it.)
        sys.setswitchinterval(0.0005)

    def ping(self) -> dict[str, str]:
        """Answers once the worker process is up (the driver gives a slot children only then), with where it
        runs: what a child it ran records, kept by the driver for a child that times out or dies with it."""
        import ray

        return {"worker": worker_name(), "node": str(ray.get_runtime_context().get_node_id())}

    def load(self, refs: list[Any]) -> SearchSpace:
        """The space of ``refs`` with its shared data, fetched on the first call for it and kept."""
        import ray

        space_ref, shared_ref = refs  # wrapped in a list, so Ray hands over the refs, not their values
        key = space_ref.hex()
        with self._loading:
            if key not in self._spaces:
                space = ray.get(space_ref)
                space.use_shared_data(ray.get(shared_ref))
                self._spaces[key] = space
                self._refs[key] = [space_ref, shared_ref]
            return self._spaces[key]

    def held(self, space: list[Any] | str) -> SearchSpace:
        """The space of a call: fetched from its refs, or named by the key of one this slot holds."""
        if not isinstance(space, str):
            return self.load(space)
        held = self._spaces.get(space)
        if held is None:  # the driver names a space by key only after this slot has loaded it
            raise ExecutorError(f"this worker holds no space {space!r}; it holds {sorted(self._spaces)}")
        return held

    def prepare(self, refs: list[Any]) -> bool:
        """Fetch the space before the first child; False if that failed (the first child, which loads
        again, then records why)."""
        try:
            self.load(refs)
        except Exception:  # recorded with the first child, which loads again
            return False
        return True

    def run(self, space: list[Any] | str, payload: bytes, seq: int) -> Result:
        """Run the child pickled in ``payload`` (task, queued time, `DataParallel` settings) once the calls
        sent before it (``seq`` numbers them from 0) have run; ``space`` is the space's refs or the
        key of one this slot holds. The task arrives as bytes, unpickled here, so that nothing Ray
        does before this method runs can fail and leave the next call waiting for its turn forever."""
        from ray import cloudpickle

        with self._turn:
            self._turn.wait_for(lambda: self._next == seq)
        try:
            task, queued_at, parallel = cloudpickle.loads(payload)
            held = self.held(space)
            refs = self._refs.get(space if isinstance(space, str) else space[0].hex())
            return child_on_worker(held, task, queued_at, parallel, refs)
        finally:
            with self._turn:
                self._next += 1
                self._turn.notify_all()
