"""The throughput model of `benchmarks.distbelief`: costs measured on this machine, and each mode's step built
from them.

Measured (`measure_costs`), each with the real code the modes run:

- ``local(b)``: one training step of one process (forward, backward, Adam step) on b examples, fitted as
  ``local_a + local_c * b`` from b = 16 and 256: sync's compute;
- ``replica_step``: one Downpour step of a lone `Replica` actor against two `ParameterShard` actors (fetch,
  gradient of 64 examples, push, the shard's Adagrad step), timed over a work unit of 16 steps;
- ``push_service``: the time a shard spends on one push (receiving half the vector and applying Adagrad);
- ``unit(n)``: one Sandblaster shard of n examples, the call's round trip from the coordinator included,
  fitted as ``unit_a + unit_c * n``; ``add``: adding one gradient vector on the coordinator;
- ``eff_k``: how many cores k busy processes really get here: k actors computing gradients at once, their
  total rate over one actor's (the machine is shared, so this is measured, not assumed).

Model, for k workers getting ``eff(k)`` cores (each worker ``max(1, k / eff(k))`` times slower):

- sync: a step is ``local(64 / k)`` slowed, plus the all-reduce, ``2 (k - 1) / k * comm2`` (a ring),
  slowed too, ``comm2`` calibrated on the measured K=2 run (so K=2 is not a check; K=4 is);
- downpour: each replica does ``64 / (replica_step * slow)`` examples/s, the shards cap the total at
  ``64 / push_service`` (every push reaches every shard; with S shards instead of 2, a shard's service time
  is ``push_service * 2 / S``, at least a round trip);
- sandblaster: an evaluation runs ``ceil(4k / k)`` rounds of shards of ``n / 4k`` examples (slowed), adds
  ``4k`` gradients, and costs the coordinator ``coordinator`` seconds (calibrated on the measured K=1 run, so
  K=1 is not a check; K=2 and 4 are); an epoch is ``evals_per_epoch`` evaluations (counted in the runs:
  L-BFGS iterations and line searches).

On paper (1..128 replicas) every replica gets a core of its own, ``eff(k) = k``, and transfers cost what
they cost here between processes (a network would cost more).
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
    return float(together / ((before + after) / 2))  # one task's rate: before and after, as the load varies


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
    unit = [torch.arange(i * BATCH, (i + 1) * BATCH) for i in range(16)]
    p = DataParallel(mode="downpour")
    out["replica_step"] = _median_time(lambda: ray.get(replica.run.remote(unit, shards, p)), 3) / len(unit)
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
    grads = [flat.numpy().copy() for _ in range(16)]
    import numpy as np

    out["add"] = _median_time(lambda: np.stack(grads).sum(0), reps) / 16
    for k in workers:
        out[f"eff_{k}"] = 1.0 if k == 1 else effective_cores(k)
    return out


def calibrate(runs: list[dict[str, Any]], m: dict[str, float]) -> None:
    """Set the two costs measured on the runs themselves: sync's all-reduce per step at K=2 (``sync_comm2``,
    unslowed: the measured K=2 step less its modelled compute, over K=2's slowdown) and Sandblaster's
    coordinator time per evaluation at K=1 (``coordinator``: the measured evaluation less its shards; L-BFGS's
    own arithmetic, the parameter hand-out, the bookkeeping). So sync K=2 and Sandblaster K=1 are not checks."""
    sync = next((r for r in runs if r["mode"] == "sync" and r["workers"] == 2), None)
    if sync is not None:
        step = (sync["epoch_s"][-1] / len(sync["epoch_s"]) - m["val_eval_s"]) / (m["n_train"] / BATCH)
        slow = _slow(m, 2, None)
        m["sync_comm2"] = max(0.0, step - _local(m, BATCH / 2) * slow) / slow
    blaster = next((r for r in runs if r["mode"] == "sandblaster" and r["workers"] == 1), None)
    if blaster is not None:
        evals = blaster["record"]["evaluations"]
        per_eval = (blaster["epoch_s"][-1] - len(blaster["epoch_s"]) * m["val_eval_s"]) / evals
        m["coordinator"] = max(0.0, per_eval - _evaluation(m, 1, 1.0))


def _evaluation(m: dict[str, float], k: int, slow: float) -> float:
    """One Sandblaster evaluation's shards: ceil(4k / k) rounds of slowed shards, and adding the gradients."""
    units = 4 * k
    per_unit = (m["unit_a"] + m["unit_c"] * m["n_train"] / units) * slow
    return math.ceil(units / k) * per_unit + units * m["add"]


def _local(m: dict[str, float], b: float) -> float:
    return m["local_a"] + m["local_c"] * b


def _slow(m: dict[str, float], k: int, cores: float | None) -> float:
    """How many times slower each of k workers computes: k over the cores they get."""
    eff = cores if cores is not None else m.get(f"eff_{k}", float(k))
    return max(1.0, k / eff)


def simulate(mode: str, k: int, m: dict[str, float], on_paper: bool = False, shards: int = 2) -> float:
    """Modelled training throughput (examples/s) of ``k`` workers: measured here (``eff_k`` cores), or
    ``on_paper`` with a core per worker; Downpour with ``shards`` parameter-server shards (a shard's push
    service time shrinks with its share of the vector, down to a call's round trip)."""
    slow = _slow(m, k, float(k) if on_paper else None)
    n = m["n_train"]
    if mode == "sync":  # the all-reduce's processes share the cores too: it slows with them
        comm = 2 * (k - 1) / k * m.get("sync_comm2", 0.0) * slow
        epoch = n / BATCH * (_local(m, BATCH / k) * slow + comm)
    elif mode == "downpour":
        service = max(m["push_service"] * 2 / shards, m["alpha"])  # measured with 2 shards
        rate = min(k * BATCH / (m["replica_step"] * slow), BATCH / service)
        epoch = n / rate
    else:
        evaluation = _evaluation(m, k, slow) + m.get("coordinator", 0.0)
        evals = m.get("evals_per_epoch", 6.0)
        epoch, n = evals * evaluation, n * evals
    return n / (epoch + m["val_eval_s"])
