"""The throughput model of `benchmarks.distbelief`: costs measured on this machine, and each mode's step built
from them.

Measured (`measure_costs`), each with the real code the modes run:

- ``local(b)``: one training step of one process (forward, backward, Adam step) on b examples, fitted as
  ``local_a + local_c * b`` from b = 16 and 256: sync's compute;
- ``replica_step``: one Downpour step of a lone `Replica` actor against two `ParameterShard` actors (fetch,
  gradient of 64 examples, push, the shard's Adagrad step), timed over 16 steps in the runs' work units of
  4, each a call from the driver; and ``replica_cpu``, the CPU seconds the whole machine spends on such a
  step (replica, shards, Ray's own processes; from /proc/stat, less the load measured just before);
- ``push_service``: the time a shard spends on one push (receiving half the vector and applying Adagrad);
- ``unit(n)``: one Sandblaster shard of n examples, the call's round trip from the coordinator included,
  fitted as ``unit_a + unit_c * n``; ``blast_round_k``: a round of k such shards at once, each of n / 4k
  examples, on k `GradientWorker` actors; ``add``: adding one gradient vector on the coordinator;
- ``eff_k``: how many cores k busy processes really get here: k actors computing gradients at once, their
  total rate over one actor's, at most the machine's CPUs (the machine is shared, so this is measured, not
  assumed); ``cores``: the most any number of them got;
- ``sync_comm_k``: the all-reduces of one sync step (the loss, and the gradient in DistributedDataParallel's
  buckets) among k gloo processes in Ray actors, alone; at k = 2, with tiny tensors, with the real ones and
  with 8 times the real ones: a ring's per-message latency ``ring_alpha`` and per-float cost ``ring_beta``.

Calibrated on the K=1 runs (so those are not checks): Sandblaster's ``coordinator`` time per evaluation, and
``downpour_overhead``, the run's Downpour step over the lone replica's (see `calibrate`).

Model, for k workers getting ``eff(k)`` cores (each worker ``max(1, k / eff(k))`` times slower):

- sync: a step is ``local(64 / k)`` slowed plus ``sync_comm_k`` (measured with the same k processes on the
  same cores, so their sharing of cores is in it);
- downpour: each replica does ``64 / (replica_step * overhead * slow)`` examples/s, the shards cap the total
  at ``64 / push_service`` (every push reaches every shard; with S shards instead of 2, a shard's service
  time is ``push_service * 2 / S``, at least a round trip), and the machine's cores cap it at
  ``cores * 64 / (replica_cpu * overhead)``;
- sandblaster: an evaluation runs ``ceil(4k / k)`` rounds of k shards (``blast_round_k``), adds ``4k``
  gradients, and costs the coordinator ``coordinator`` seconds; an epoch is ``evals_per_epoch`` evaluations
  (counted in the runs: L-BFGS iterations and line searches).

On paper (1..128 replicas) every replica gets a core of its own, ``eff(k) = k``, no core is shared (no
``cores`` cap), a Sandblaster round is one shard's ``unit(n / 4k)``, sync's all-reduce is a ring's
``2 (k - 1) alpha`` per call plus ``2 (k - 1) / k`` of the floats at ``beta``, and transfers cost what they
cost here between processes (a network would cost more).
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

BATCH = 64


def _median_time(f: Any, reps: int) -> float:
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _burn(seconds: float) -> int:
    """Gradient steps of a small MLP done in ``seconds`` (the unit of `effective_cores`)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 10))
    x, y = torch.randn(64, 40), torch.randint(0, 10, (64,))
    end, steps = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        steps += 1
    return steps


def effective_cores(k: int, seconds: float = 1.5) -> float:
    """k Ray tasks computing at once: their total rate over one task's rate alone."""
    import ray

    burn = ray.remote(num_cpus=1)(_burn)
    ray.get([burn.remote(0.2) for _ in range(k)])  # workers started
    before = ray.get(burn.remote(seconds))
    together = sum(ray.get([burn.remote(seconds) for _ in range(k)]))
    after = ray.get(burn.remote(seconds))
    import os

    cores = float(together / ((before + after) / 2))  # one task's rate: before and after, as the load varies
    return min(cores, float(os.cpu_count() or k), float(k))  # more than the machine has is the noise of the rates


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every process: replicas, shards, Ray's own), from /proc/stat."""
    import os

    with open("/proc/stat") as f:
        fields = [float(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_per_call(f: Any, calls: int) -> tuple[float, float]:
    """(median wall seconds of ``f``, machine CPU seconds it costs, less the machine's load before it)."""
    f()
    began, cpu0 = time.perf_counter(), _busy_cpu_s()
    time.sleep(1.0)
    load = (_busy_cpu_s() - cpu0) / (time.perf_counter() - began)  # other work's cores, subtracted below
    walls = []
    began, cpu0 = time.perf_counter(), _busy_cpu_s()
    for _ in range(calls):
        t = time.perf_counter()
        f()
        walls.append(time.perf_counter() - t)
    used = _busy_cpu_s() - cpu0 - load * (time.perf_counter() - began)
    return statistics.median(walls), max(used, 0.0) / calls


class _RingRank:
    """A Ray actor: one of k processes in a gloo group, timing the collectives of one sync training step."""

    def where(self) -> tuple[str, int]:
        import socket

        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        return ray.util.get_node_ip_address(), port

    def time(self, rank: int, world: int, address: str, port: int, sizes: list[int], reps: int) -> float:
        """Median seconds of one round of all-reduces of float tensors of ``sizes`` elements."""
        import datetime

        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{address}:{port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=120),
        )
        try:
            tensors = [torch.ones(n) for n in sizes]
            times = []
            for i in range(reps + 10):  # the first 10 warm the connections up
                t = time.perf_counter()
                for tensor in tensors:
                    dist.all_reduce(tensor)
                if i >= 10:
                    times.append(time.perf_counter() - t)
            dist.barrier()
        finally:
            dist.destroy_process_group()
        return statistics.median(times)


def allreduce_time(k: int, sizes: list[int], reps: int = 200) -> float:
    """One round of gloo all-reduces of ``sizes`` among ``k`` Ray actors of a CPU each (rank 0's median)."""
    import ray

    ring: Any = ray.remote(_RingRank).options(num_cpus=1)
    actors = [ring.remote() for _ in range(k)]
    try:
        address, port = ray.get(actors[0].where.remote())
        times = ray.get([a.time.remote(rank, k, address, port, sizes, reps) for rank, a in enumerate(actors)])
    finally:
        for actor in actors:
            ray.kill(actor)
    return float(times[0])


def sync_step_sizes(params: int) -> list[int]:
    """The all-reduces of one sync training step: the loss (2 values, float64 as 4 floats) and the gradient in
    DistributedDataParallel's buckets (the first capped at 1 MB, the rest at 25 MB)."""
    first = min(params, 262_144)
    rest = params - first
    return [4, first] + [min(rest - i, 6_553_600) for i in range(0, rest, 6_553_600)]


def measure_costs(model: Any, train: Any, val_x: Any, workers: list[int], reps: int = 10) -> dict[str, float]:
    """The costs of the module docstring, measured with the real actors on this machine."""
    import ray
    import torch

    from l2l.nas.distbelief import flat_parameters, optimizer_by_name, partition
    from l2l.runs.distbelief import DataParallel
    from l2l.runs.downpour import ParameterShard, Replica
    from l2l.runs.sandblaster import GradientWorker

    torch.set_num_threads(1)
    flat = flat_parameters(model)
    out: dict[str, float] = {"params": float(flat.numel()), "n_train": float(len(train))}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(b: int) -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(train.x[:b]), train.y[:b]).backward()
        opt.step()

    t16, t256 = _median_time(lambda: step(16), reps * 3), _median_time(lambda: step(256), reps * 3)
    out["local_c"] = max((t256 - t16) / 240, 0.0)
    out["local_a"] = max(t16 - 16 * out["local_c"], 0.0)
    out["val_eval_s"] = _median_time(lambda: model(val_x), reps)

    ranges = partition(len(flat), 2)
    shard_class: Any = ray.remote(ParameterShard).options(num_cpus=0)
    shards = [shard_class.remote(flat[a:b], optimizer_by_name("adagrad"), 0.01, 0.0) for a, b in ranges]
    replica_class: Any = ray.remote(Replica).options(num_cpus=1)
    replica = replica_class.remote(model, train, ranges)
    p = DataParallel(mode="downpour")
    steps = [torch.arange(i * BATCH, (i + 1) * BATCH) for i in range(16)]
    units = [steps[i : i + p.unit_batches] for i in range(0, len(steps), p.unit_batches)]  # as the runs hand out

    def work() -> None:
        for unit in units:
            ray.get(replica.run.remote(unit, shards, p))

    wall, cpu = _cpu_per_call(work, 5)
    out["replica_step"], out["replica_cpu"] = wall / len(steps), cpu / len(steps)
    half = flat[ranges[0][0] : ranges[0][1]].numpy()
    one_push = _median_time(lambda: ray.get(shards[0].push.remote(half, 0, None)), reps)
    out["alpha"] = _median_time(lambda: ray.get(shards[0].ping.remote()), reps)
    out["push_service"] = max(one_push - out["alpha"], 1e-6)
    for actor in [*shards, replica]:
        ray.kill(actor)

    worker_class: Any = ray.remote(GradientWorker).options(num_cpus=1)
    worker = worker_class.remote(model, train, 1.0)
    ref = ray.put(flat.numpy())
    n = len(train)
    small, large = n // 16, n // 4
    t_small = _median_time(lambda: ray.get(worker.shard.remote(ref, 0, small)), reps)
    t_large = _median_time(lambda: ray.get(worker.shard.remote(ref, 0, large)), reps)
    out["unit_c"] = (t_large - t_small) / (large - small)
    out["unit_a"] = max(t_small - small * out["unit_c"], 0.0)
    ray.kill(worker)
    for k in workers:  # a round of k shards at once, each of n / 4k examples, as an evaluation hands them out
        pool = [worker_class.remote(model, train, 1.0) for _ in range(k)]
        size = n // (4 * k)
        out[f"blast_round_{k}"] = _median_time(
            lambda pool=pool, size=size: ray.get(
                [w.shard.remote(ref, i * size, (i + 1) * size) for i, w in enumerate(pool)]
            ),
            reps,
        )
        for w in pool:
            ray.kill(w)
    grads = [flat.numpy().copy() for _ in range(16)]
    import numpy as np

    out["add"] = _median_time(lambda: np.stack(grads).sum(0), reps) / 16
    for k in workers:
        out[f"eff_{k}"] = 1.0 if k == 1 else effective_cores(k)
    import os

    cpus = min(os.cpu_count() or 1, int(ray.available_resources().get("CPU", 1)))
    out["cores"] = max([1.0 if cpus == 1 else effective_cores(cpus)] + [out[f"eff_{k}"] for k in workers])
    sizes = sync_step_sizes(int(out["params"]))
    for k in sorted({2, *workers} - {1}):
        out[f"sync_comm_{k}"] = allreduce_time(k, sizes)
    # a ring's cost, 2 (k - 1) alpha per all-reduce and 2 (k - 1) / k of the bytes at beta, from k = 2
    out["ring_alpha"] = allreduce_time(2, [4] * len(sizes)) / (2 * len(sizes))
    bigger = allreduce_time(2, [8 * size for size in sizes])
    out["ring_beta"] = max(bigger - out["sync_comm_2"], 0.0) / (7 * sum(sizes))
    out["sync_calls"], out["sync_floats"] = float(len(sizes)), float(sum(sizes))
    return out


def calibrate(runs: list[dict[str, Any]], m: dict[str, float]) -> None:
    """Set the costs measured on the K=1 runs themselves, so those runs are not checks (every other run is):

    - ``coordinator``: Sandblaster's coordinator time per evaluation, the measured evaluation less its shards
      (L-BFGS's own arithmetic, the parameter hand-out, the bookkeeping);
    - ``downpour_overhead``: a Downpour step of the run over the lone replica's (the driver handing out work
      units and snapshotting the shards, the epoch's bookkeeping), applied to its time and its CPU."""
    blaster = next((r for r in runs if r["mode"] == "sandblaster" and r["workers"] == 1), None)
    if blaster is not None:
        evals = blaster["record"]["evaluations"]
        per_eval = (blaster["epoch_s"][-1] - len(blaster["epoch_s"]) * m["val_eval_s"]) / evals
        m["coordinator"] = max(0.0, per_eval - _evaluation(m, 1, 1.0, False))
    down = next((r for r in runs if r["mode"] == "downpour" and r["workers"] == 1), None)
    if down is not None:
        steps = sum(math.ceil(m["n_train"] / BATCH) for _ in down["epoch_s"])
        per_step = (down["epoch_s"][-1] - len(down["epoch_s"]) * m["val_eval_s"]) / steps
        m["downpour_overhead"] = max(1.0, per_step / m["replica_step"])


def _evaluation(m: dict[str, float], k: int, slow: float, on_paper: bool) -> float:
    """One Sandblaster evaluation's shards: ceil(4k / k) rounds of k shards (measured here at k, or on paper
    one shard's time, slowed), and adding the gradients."""
    units = 4 * k
    measured = m.get(f"blast_round_{k}")
    per_round = (
        measured if measured is not None and not on_paper else (m["unit_a"] + m["unit_c"] * m["n_train"] / units) * slow
    )
    return math.ceil(units / k) * per_round + units * m["add"]


def _local(m: dict[str, float], b: float) -> float:
    return m["local_a"] + m["local_c"] * b


def _slow(m: dict[str, float], k: int, cores: float | None) -> float:
    """How many times slower each of k workers computes: k over the cores they get."""
    eff = cores if cores is not None else m.get(f"eff_{k}", float(k))
    return max(1.0, k / eff)


def _sync_comm(m: dict[str, float], k: int, on_paper: bool) -> float:
    """The all-reduces of one sync step among k processes: measured here at k, or on paper a ring's cost."""
    if k == 1:
        return 0.0
    if not on_paper and f"sync_comm_{k}" in m:
        return m[f"sync_comm_{k}"]
    return 2 * (k - 1) * m["sync_calls"] * m["ring_alpha"] + 2 * (k - 1) / k * m["sync_floats"] * m["ring_beta"]


def simulate(mode: str, k: int, m: dict[str, float], on_paper: bool = False, shards: int = 2) -> float:
    """Modelled training throughput (examples/s) of ``k`` workers: measured here (``eff_k`` cores), or
    ``on_paper`` with a core per worker; Downpour with ``shards`` parameter-server shards (a shard's push
    service time shrinks with its share of the vector, down to a call's round trip)."""
    slow = _slow(m, k, float(k) if on_paper else None)
    n = m["n_train"]
    if mode == "sync":
        epoch = n / BATCH * (_local(m, BATCH / k) * slow + _sync_comm(m, k, on_paper))
    elif mode == "downpour":
        service = max(m["push_service"] * 2 / shards, m["alpha"])  # measured with 2 shards
        overhead = m.get("downpour_overhead", 1.0)
        rate = min(k * BATCH / (m["replica_step"] * overhead * slow), BATCH / service)
        if not on_paper and m.get("replica_cpu"):  # every process here shares the machine's cores
            rate = min(rate, m["cores"] * BATCH / (m["replica_cpu"] * overhead))
        epoch = n / rate
    else:
        evaluation = _evaluation(m, k, slow, on_paper) + m.get("coordinator", 0.0)
        evals = m.get("evals_per_epoch", 6.0)
        epoch, n = evals * evaluation, n * evals
    return n / (epoch + m["val_eval_s"])
