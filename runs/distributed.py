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

from l2l.runs.executors import ChildTask, failure_summary, run_child
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


class SyncRank:
    """A Ray actor: one of the K replicas of a ``sync`` child, in a placement group that may spread them over
    the cluster's nodes; the K join one `torch.distributed` group over TCP, at rank 0's address."""

    def __init__(self, refs: list[Any]) -> None:
        from l2l.runs.secrets import strip_secrets

        strip_secrets()
        self.refs = refs  # the space's and its shared data's object refs, wrapped so Ray passes the refs

    def where(self) -> tuple[str, str, int]:
        """(node id, IP address, a free port) of this replica: rank 0's are the group's meeting point."""
        import socket

        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        context = ray.get_runtime_context()
        return str(context.get_node_id()), ray.util.get_node_ip_address(), port

    def run(
        self, payload: bytes, rank: int, world: int, address: str, port: int, nccl: bool, slow: float = 1.0
    ) -> Result | None:
        """Train the child of ``payload`` as rank ``rank``; rank 0 returns the result with its record, another
        rank only its failure."""
        import datetime

        import ray
        import torch
        import torch.distributed as dist
        from ray import cloudpickle

        from l2l.nas.distbelief import recording, slowed
        from l2l.runs.distbelief import throughput

        space = ray.get(self.refs[0])
        space.use_shared_data(ray.get(self.refs[1]))
        task: ChildTask = cloudpickle.loads(payload)
        gpus = ray.get_gpu_ids()
        device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
        # NCCL needs a GPU of its own per rank (each replica was given whole GPUs); gloo otherwise
        backend = "nccl" if nccl and device == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=300),
        )
        try:
            ctx = dataclasses.replace(task.ctx, rank=rank, world_size=world, device=device)
            with recording() as rec, slowed(slow):
                result = run_child(space, dataclasses.replace(task, ctx=ctx))
        finally:
            dist.destroy_process_group()
        if rank != 0:
            return result if result.status == "failed" else None
        runtime = dict(result.runtime)
        runtime.update(workers_per_child=world, backend=backend)
        record = {"backend": backend, **throughput(rec)}
        return dataclasses.replace(result, runtime=runtime, info={**result.info, "data_parallel": record})


def run_sync_on_actors(refs: list[Any], task: ChildTask, parallel: Any) -> Result:
    """Train ``task`` with ``parallel.workers`` `SyncRank` actors placed by a placement group (spread over the
    nodes unless ``spread`` is ``pack``); rank 0's result, with the nodes, devices and throughput recorded."""
    import ray
    from ray import cloudpickle
    from ray.util.placement_group import remove_placement_group

    from l2l.runs.distbelief import in_bundle, is_death, worker_group

    world = parallel.workers
    try:
        group = worker_group(parallel, world)
    except Exception as exc:  # no room for the replicas: this child fails, the search goes on
        return Result.failed(f"cannot place the {world} replicas of child {task.number}: {exc}")
    actors: list[Any] = []
    try:
        actors += [in_bundle(ray.remote(SyncRank), group, i, parallel).remote(refs) for i in range(world)]
        where = ray.get([a.where.remote() for a in actors])
        payload = cloudpickle.dumps(task)
        meet = (where[0][1], where[0][2], parallel.gpus >= 1)
        calls = {
            a.run.remote(payload, rank, world, *meet, parallel.slowdown(rank)): rank for rank, a in enumerate(actors)
        }
        result: Result | None = None
        while calls:
            ready, _ = ray.wait(list(calls), num_returns=1)
            rank = calls.pop(ready[0])
            try:
                out = ray.get(ready[0])
            except Exception as exc:
                what = "died" if is_death(exc) else "failed"
                why = failure_summary(exc)
                return Result.failed(f"replica {rank} of the {world} training child {task.number} {what}: {why}")
            if out is not None and out.status == "failed":
                return out  # the others may wait in a collective that never comes: they are killed below
            if rank == 0:
                result = out
    except Exception as exc:  # a replica that could not start or report: this child fails with the reason
        return Result.failed(f"the {world} replicas of child {task.number} could not train: {failure_summary(exc)}")
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        remove_placement_group(group)
    if result is None:
        return Result.failed(f"child {task.number}: rank 0 of {world} replicas returned no result")
    record = dict(result.info.get("data_parallel", {}))
    record.update(parallel.summary())
    record["nodes"] = sorted({w[0] for w in where})
    record["rank_nodes"] = [w[0] for w in where]
    return dataclasses.replace(result, info={**result.info, "data_parallel": record})
