"""How many children a Ray cluster holds at once: its resources counted node by node, a data-parallel child's
workers each on one node (`fit_slots`); a child that could never be placed is refused before it waits, and
resources no cluster could give (`check_options`), or GPUs on a machine without any, before Ray starts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from l2l.runs.executors import ExecutorError


def fit_slots(
    cluster: Mapping[str, float],
    cpus_per_child: float,
    gpus_per_child: float,
    max_concurrent: int | None = None,
    nodes: Sequence[Mapping[str, float]] = (),
    worker: tuple[float, float] | None = None,
) -> int:
    """How many children the cluster's resources hold at once (fractions of a GPU let several share one).
    With ``nodes`` (each live node's resources) a child must fit on one node, and the slots are counted
    node by node: Ray places a child on one node, so a child larger than every node would wait forever.
    With ``worker`` (CPU, GPU of one of a data-parallel child's workers, placed apart) that must fit."""
    fit = _fit(cluster, cpus_per_child, gpus_per_child, "the Ray cluster")
    if fit < 1:
        raise ExecutorError(
            f"one child needs {cpus_per_child:g} CPU and {gpus_per_child:g} GPU; the cluster has "
            f"{cluster.get('CPU', 0):g} CPU and {cluster.get('GPU', 0):g} GPU"
        )
    if nodes:
        cpus, gpus = worker or (cpus_per_child, gpus_per_child)
        what = "one worker of a child" if worker else "one child"
        per_node = [_fit(node, cpus, gpus, None) for node in nodes]
        if max(per_node) < 1:
            largest = max(nodes, key=lambda n: (n.get("CPU", 0.0), n.get("GPU", 0.0)))
            raise ExecutorError(
                f"{what} needs {cpus:g} CPU and {gpus:g} GPU on one node, and no node of the cluster has that much "
                f"(the largest has {largest.get('CPU', 0):g} CPU and {largest.get('GPU', 0):g} GPU; {len(nodes)} "
                "node(s)); lower --cpus-per-child or --gpus-per-child"
            )
        if worker:  # its K workers may share a node or not, but each sits on one: whole children, node by node
            k = max(1, round(cpus_per_child / cpus if cpus > 0 else gpus_per_child / gpus))
            if sum(per_node) < k:
                lower = "--gpus-per-child" if gpus > 0 else "--cpus-per-child"
                raise ExecutorError(
                    f"a child's {k} workers need {cpus:g} CPU and {gpus:g} GPU each, each on one node, and the "
                    f"cluster's nodes hold {sum(per_node)} such worker(s) at once ({len(nodes)} node(s)): every "
                    f"child would fail after waiting for its workers; lower {lower} or --workers-per-child"
                )
            fit = min(fit, sum(per_node) // k)
        else:
            fit = sum(per_node)
    return min(fit, max_concurrent) if max_concurrent else fit


def _fit(resources: Mapping[str, float], cpus_per_child: float, gpus_per_child: float, where: str | None) -> int:
    fits = []
    if cpus_per_child > 0:
        fits.append(math.floor(resources.get("CPU", 0.0) / cpus_per_child + 1e-9))
    if gpus_per_child > 0:
        if where is not None and resources.get("GPU", 0.0) <= 0:
            raise ExecutorError(f"--gpus-per-child {gpus_per_child} asked for, but {where} has no GPU")
        fits.append(math.floor(resources.get("GPU", 0.0) / gpus_per_child + 1e-9))
    return min(fits) if fits else 0


def check_local_gpus(gpus_per_child: float) -> None:
    """Refuse GPUs per child on a machine where torch sees none (an embedded Ray instance would have none)."""
    if gpus_per_child > 0:
        import torch

        if not torch.cuda.device_count():
            raise ExecutorError(
                f"--gpus-per-child {gpus_per_child:g} asked for, but this machine has no GPU (torch sees none) for "
                "an embedded Ray instance; join a cluster that has GPUs with --address HOST:PORT"
            )


def check_options(
    cpus_per_child: float,
    gpus_per_child: float,
    max_concurrent: int | None,
    child_timeout: float | None,
    max_retries: int,
    prefetch: int | None,
    workers_per_child: int,
) -> None:
    """Refuse the Ray executor's options that no cluster could honour, before it starts or joins one."""
    if cpus_per_child < 0 or gpus_per_child < 0 or (cpus_per_child == 0 and gpus_per_child == 0):
        raise ExecutorError(
            f"--cpus-per-child and --gpus-per-child must be >= 0 and not both 0, got {cpus_per_child}, {gpus_per_child}"
        )
    if gpus_per_child > 1 and gpus_per_child != int(gpus_per_child):
        raise ExecutorError(f"--gpus-per-child above 1 must be a whole number, got {gpus_per_child}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ExecutorError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    if child_timeout is not None and not child_timeout > 0:
        raise ExecutorError(f"--child-timeout must be > 0 seconds, got {child_timeout}")
    if workers_per_child < 1:
        raise ExecutorError(f"--workers-per-child must be >= 1, got {workers_per_child}")
    if prefetch is not None and prefetch < 0:
        raise ExecutorError(f"prefetch must be >= 0, got {prefetch}")
    if max_retries < 0:
        raise ExecutorError(f"max_retries must be >= 0, got {max_retries}")
