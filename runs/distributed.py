"""One child trained data-parallel by K processes with `torch.distributed` (``--workers-per-child K``).

The Ray task of the child holds the resources of K workers and spawns K processes on its node. They
join one process group (`rank_devices`: NCCL when each has a GPU of its own, gloo otherwise, on the GPUs
the child was given or the CPU), each evaluates the child with its
``rank`` in the `Context`, and the training loop (`l2l.nas.train.train_classifier`) shards every batch
across them and averages the gradients: DistBelief's model replicas, but synchronous. Rank 0's
result is the child's.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from typing import Any

from l2l.runs.executors import ChildTask, run_child
from l2l.search_spaces.api import Result, SearchSpace
from l2l.search_spaces.registry import FILE_PLUGIN_PREFIX


def rank_devices(world: int, gpus: int) -> tuple[str, list[str]]:
    """The backend and each rank's device when ``world`` processes train one child on the ``gpus`` GPUs it was
    given: NCCL with a GPU per rank when there are enough, else gloo with the ranks sharing the GPUs that were
    reserved (NCCL cannot put two ranks on one GPU), and gloo on the CPU without a GPU."""
    if gpus <= 0:
        return "gloo", ["cpu"] * world
    if gpus >= world:
        return "nccl", [f"cuda:{rank}" for rank in range(world)]
    return "gloo", [f"cuda:{rank % gpus}" for rank in range(world)]


def _rank_main(rank: int, payload: bytes, world: int, init_file: str, out: Any) -> None:
    import torch
    import torch.distributed as dist
    from ray import cloudpickle

    space, task = cloudpickle.loads(payload)

    gpus = torch.cuda.device_count() if task.ctx.device.startswith("cuda") else 0
    backend, devices = rank_devices(world, gpus)
    device = devices[rank]
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ctx = dataclasses.replace(task.ctx, rank=rank, world_size=world, device=device)
        result = run_child(space, dataclasses.replace(task, ctx=ctx))
        if rank == 0:
            runtime = dict(result.runtime)
            runtime.update(workers_per_child=world, backend=backend, rank_devices=devices)
            out.put(dataclasses.replace(result, runtime=runtime))
    finally:
        dist.destroy_process_group()


def run_data_parallel(space: SearchSpace, task: ChildTask, workers: int) -> Result:
    """Evaluate ``task`` with ``workers`` processes training it together; returns rank 0's result."""
    import torch.multiprocessing as mp

    if workers < 2:
        return run_child(space, task)
    from ray import cloudpickle

    module = sys.modules.get(type(space).__module__)
    if module is not None and module.__name__.startswith(FILE_PLUGIN_PREFIX):
        cloudpickle.register_pickle_by_value(module)  # not importable by name in the new processes
    payload = cloudpickle.dumps((space, task))
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    handle, init_file = tempfile.mkstemp(prefix="l2l-ddp-")
    os.close(handle)
    os.unlink(init_file)  # the file store creates it; a stale one from an earlier group would confuse it
    try:
        mp.start_processes(
            _rank_main, args=(payload, workers, init_file, out), nprocs=workers, join=True, start_method="spawn"
        )
    except mp.ProcessRaisedException as exc:
        return Result.failed(f"a process of the {workers} training child {task.number} failed: {exc}")
    except mp.ProcessExitedException as exc:
        return Result.failed(f"a process of the {workers} training child {task.number} died: {exc}")
    finally:
        if os.path.exists(init_file):
            os.unlink(init_file)
    if out.empty():
        return Result.failed(f"child {task.number}: rank 0 of {workers} processes returned no result")
    result: Result = out.get()
    return result
