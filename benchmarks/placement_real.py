"""Simulated against measured step time of placed models on this machine, CPU threads as the devices.

Each model is profiled, cut into 8 groups and placed on two devices that are threads of this process
(`l2l.nas.placement.real.measure_step`: torch on one intra-op thread each, every op's forward and backward
run by the thread its group is placed on, in the simulator's order). Placements: everything on one thread,
the groups' first half on one thread and the rest on the other, the Kernighan-Lin min-cut, and the best of
200 random placements by the simulator. The simulator's twin machine has two devices of this core's speed
and links of latency only (`thread_machine`). Error = (simulated - measured) / measured. Also reported: the
measured ratio of backward to forward time of plain autograd (the simulator assumes 2).

    python -m benchmarks.placement_real [--models gnmt,inception,transformer] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import torch

from benchmarks.common import print_table, write_json
from l2l.nas.placement import build_model, group_ops, profile_model, simulate
from l2l.nas.placement.baselines import expand, min_cut, random_search, single_device
from l2l.nas.placement.real import measure_step, thread_machine


def backward_ratio(name: str, repeats: int) -> float:
    """Median over ``repeats`` steps of plain autograd's backward time over its forward time, one thread."""
    model = build_model(name)
    ratios = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        loss = model.module(*model.inputs)
        middle = time.perf_counter()
        loss.backward()
        ratios.append((time.perf_counter() - middle) / (middle - start))
    return statistics.median(ratios[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="gnmt,inception,transformer")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="placement_real")
    args = parser.parse_args()
    torch.set_num_threads(1)
    machine = thread_machine(2)
    payload: dict[str, Any] = {"repeats": args.repeats, "load_before": os.getloadavg(), "models": {}}
    rows = []
    for name in args.models.split(","):
        model = build_model(name)
        graph = profile_model(model)
        grouping = group_ops(graph, 8)
        placements = {
            "one thread": single_device(graph, 0),
            "halves": expand(grouping, [0, 0, 0, 0, 1, 1, 1, 1]),
            "min-cut": min_cut(graph, grouping, machine),
            "best of 200 random": random_search(graph, grouping, machine, 200)[0],
        }
        ratio = backward_ratio(name, args.repeats)
        payload["models"][name] = {"backward_ratio": ratio, "forward_ms": graph.forward_ms, "placements": {}}
        for label, placement in placements.items():
            simulated = simulate(graph, placement, machine).step_ms
            measured = measure_step(model, graph, placement, threads=2, repeats=args.repeats)
            error = (simulated - measured) / measured
            payload["models"][name]["placements"][label] = {"simulated_ms": simulated, "measured_ms": measured}
            rows.append([name, label, f"{simulated:.1f}", f"{measured:.1f}", f"{100 * error:+.0f}%", f"{ratio:.2f}"])
    payload["load_after"] = os.getloadavg()
    print(f"load average before {payload['load_before'][0]:.2f}, after {payload['load_after'][0]:.2f} (2 cores)\n")
    print_table(["model", "placement (2 threads)", "simulated ms", "measured ms", "error", "bwd/fwd measured"], rows)
    print(f"wrote {write_json(args.name, payload)}")


if __name__ == "__main__":
    main()
