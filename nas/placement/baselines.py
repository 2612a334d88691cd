"""Placements to beat: one device, the expert's layer split of GNMT, a min-cut partition, random search.

Every function returns one device index per op (what `simulate` takes). The expert places single ops;
min-cut and random search place the co-location groups the placement space chooses among.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import networkx as nx

from l2l.nas.placement.graph import OpGraph, PlacementError, group_edges
from l2l.nas.placement.simulator import Machine, out_of_memory, simulate


def expand(grouping: Sequence[int], devices: Sequence[int]) -> tuple[int, ...]:
    """Op placement from one device per group."""
    return tuple(devices[g] for g in grouping)


def gpu_indices(machine: Machine) -> list[int]:
    """Indices of the machine's accelerators: every device not named ``cpu...``."""
    gpus = [i for i, d in enumerate(machine.devices) if not d.name.startswith("cpu")]
    if not gpus:
        raise PlacementError(f"machine {[d.name for d in machine.devices]} has no GPU")
    return gpus


def single_device(graph: OpGraph, device: int) -> tuple[int, ...]:
    """Every op on ``device``."""
    return tuple(device for _ in graph.ops)


def _layer_device(scope: str, gpus: Sequence[int]) -> int | None:
    head, _, rest = scope.partition(".")
    if head in ("src_embed", "tgt_embed", "query"):
        return gpus[0]
    if head == "softmax":
        return gpus[-1]
    if head in ("encoder", "decoder") and rest:
        return gpus[int(rest.split(".")[0]) % len(gpus)]
    return None


def expert_gnmt(graph: OpGraph, machine: Machine) -> tuple[int, ...]:
    """Google's NMT split (Wu et al., 2016): encoder layer k and decoder layer k on GPU k (modulo the GPUs),
    both embeddings and the attention with the bottom layers on the first GPU, the softmax and the loss on
    the last. An op outside those modules (a concatenation, a residual sum, a slice) joins the op that first
    reads it; one nothing reads (the summed loss) goes to the last GPU."""
    if graph.model != "gnmt":
        raise PlacementError(f"the expert placement is defined for the translation model gnmt, not {graph.model!r}")
    gpus = gpu_indices(machine)
    out: list[int | None] = [_layer_device(op.scope, gpus) for op in graph.ops]
    for i in reversed(range(len(graph.ops))):
        if out[i] is None:
            readers = graph.consumers(i)
            out[i] = out[readers[0]] if readers else gpus[-1]
    return tuple(d for d in out if d is not None)


def min_cut(graph: OpGraph, grouping: Sequence[int], machine: Machine, seed: int = 0) -> tuple[int, ...]:
    """Groups split over the GPUs by recursive Kernighan-Lin bisection (networkx) of the group graph, edges
    weighted by the bytes between groups: halves with equal numbers of groups (the groups have about equal
    cost) and the least traffic across. Uses the largest power of two of GPUs, part k on the k-th GPU."""
    gpus = gpu_indices(machine)
    groups = max(grouping) + 1
    g = nx.Graph()
    g.add_nodes_from(range(groups))
    for (a, b), nbytes in group_edges(graph, grouping).items():
        weight = g.edges[a, b]["weight"] + nbytes if g.has_edge(a, b) else nbytes
        g.add_edge(a, b, weight=weight)
    parts: list[set[int]] = [set(range(groups))]
    while 2 * len(parts) <= len(gpus) and all(len(p) >= 2 for p in parts):
        parts = [
            half for p in parts for half in nx.algorithms.community.kernighan_lin_bisection(g.subgraph(p), seed=seed)
        ]
    device = {group: gpus[k] for k, part in enumerate(parts) for group in part}
    return expand(grouping, [device[k] for k in range(groups)])


def random_search(
    graph: OpGraph, grouping: Sequence[int], machine: Machine, evaluations: int, seed: int = 0
) -> tuple[tuple[int, ...], float]:
    """The fastest of ``evaluations`` uniformly random group placements that fit in memory, and its step time
    (ms); infinite when none fits."""
    rng = random.Random(seed)
    groups = max(grouping) + 1
    best: tuple[tuple[int, ...], float] = ((), float("inf"))
    for _ in range(evaluations):
        placement = expand(grouping, [rng.randrange(len(machine.devices)) for _ in range(groups)])
        if out_of_memory(graph, placement, machine) is None:
            step = simulate(graph, placement, machine).step_ms
            if step < best[1]:
                best = (placement, step)
    return best
