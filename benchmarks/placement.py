"""Device placement (Mirhoseini et al., 2017): l2l's strategies against the baselines on a declared machine.

For each shipped model on the `placement` space's default machine (a CPU and 4 GPUs, 16 groups), every
strategy searches with at most ``--evaluations`` simulated steps per seed, in-process (`make_controller` and
`space.evaluate`, as the search loop drives them; a failed child gets the worst reward seen so far). The
reported number is the simulated step time of the best placement found. Baselines: every op on one GPU, on
the CPU, the expert split of GNMT (`l2l.nas.placement.baselines.expert_gnmt`), Kernighan-Lin min-cut of the
groups over the GPUs (one per seed) and random search with the same number of evaluations.

Every model is profiled once on this machine; the profiled graphs go to ``results/placement_profiles.json``
(``-S profile=FILE`` of the space reads one back), the table to ``results/placement.json``.

    python -m benchmarks.placement [--seeds 3] [--evaluations 1000] [--models gnmt,inception,transformer]
        [--strategies reinforce+screen,reinforce] [-S key=value ...]
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import torch

from benchmarks.common import mean_sd, print_table, write_json
from l2l.controllers import default_batch, make_controller
from l2l.nas.placement import simulate
from l2l.nas.placement.baselines import expert_gnmt, gpu_indices, min_cut, random_search, single_device
from l2l.runs.config import UsageError, parse_assignments
from l2l.search_spaces import Context, load_space
from l2l.search_spaces.placement import PlacementSpace


def search(space: PlacementSpace, strategy: str, seed: int, evaluations: int) -> tuple[float, int, list[str]]:
    """(best step time in ms, evaluations that failed, best placement per group) of one seeded search."""
    controller = make_controller(strategy, space.decisions(), seed, exact=space.exact_rewards())
    best, best_devices, failed, worst, done = math.inf, [""], 0, None, 0
    while done < evaluations:
        proposals = controller.propose(min(default_batch(strategy), evaluations - done))
        if not proposals:
            break
        rewards = []
        for p in proposals:
            result = space.evaluate(space.decode(p.tokens), Context(child=done, seed=seed))
            done += 1
            if not result.ok:
                failed += 1
                rewards.append(worst if worst is not None else space.failure_reward)
                continue
            worst = result.reward if worst is None else min(worst, result.reward)
            rewards.append(result.reward)
            if result.cost["step_time_ms"] < best:
                best, best_devices = result.cost["step_time_ms"], list(result.info["placement"])
        controller.update(proposals, rewards)
    return best, failed, best_devices


def baselines(space: PlacementSpace, seeds: list[int], evaluations: int) -> dict[str, list[float]]:
    """Step time (ms) of every baseline, one entry per seed where it depends on the seed."""
    graph, machine, grouping = space.op_graph(), space.machine, space.grouping()
    gpus = gpu_indices(machine)
    out: dict[str, list[float]] = {
        "single GPU": [simulate(graph, single_device(graph, gpus[0]), machine).step_ms],
        "single CPU": [simulate(graph, single_device(graph, 0), machine).step_ms],
    }
    if graph.model == "gnmt":
        out["expert (GNMT layers over GPUs)"] = [simulate(graph, expert_gnmt(graph, machine), machine).step_ms]
    out["min-cut (Kernighan-Lin)"] = [
        simulate(graph, min_cut(graph, grouping, machine, s), machine).step_ms for s in seeds
    ]
    out[f"random search ({evaluations})"] = [random_search(graph, grouping, machine, evaluations, s)[1] for s in seeds]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=1000)
    parser.add_argument("--models", default="gnmt,inception,transformer")
    parser.add_argument("--strategies", default="reinforce+screen,reinforce")
    parser.add_argument("-S", dest="options", action="append", default=[], help="space option key=value")
    parser.add_argument("--name", default="placement")
    args = parser.parse_args()
    try:
        options = parse_assignments(args.options, "-S")
    except UsageError as exc:
        parser.error(str(exc))
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    payload: dict[str, Any] = {"seeds": args.seeds, "evaluations": args.evaluations, "options": options, "models": {}}
    profiles: dict[str, Any] = {}
    for model in args.models.split(","):
        space = load_space("placement", {**options, "model": model})
        assert isinstance(space, PlacementSpace)
        started = time.perf_counter()
        graph = space.op_graph()
        profiles[model] = graph.to_json()
        print(
            f"{model}: {len(graph.ops)} ops, forward {graph.forward_ms:.1f} ms on this machine (profiled in "
            f"{time.perf_counter() - started:.1f} s), {graph.param_bytes / 2**20:.1f} MiB of parameters"
        )
        rows: dict[str, dict[str, Any]] = {
            name: {"step_ms": v} for name, v in baselines(space, seeds, args.evaluations).items()
        }
        for strategy in args.strategies.split(","):
            started = time.perf_counter()
            runs = [search(space, strategy, s, args.evaluations) for s in seeds]
            rows[f"{strategy} ({args.evaluations})"] = {
                "step_ms": [r[0] for r in runs],
                "failed": [r[1] for r in runs],
                "placements": [r[2] for r in runs],
                "seconds": time.perf_counter() - started,
            }
        payload["models"][model] = {"ops": len(graph.ops), "forward_ms": graph.forward_ms, "rows": rows}
        reference = {k: mean_sd(v["step_ms"])[0] for k, v in rows.items()}
        expert = reference.get("expert (GNMT layers over GPUs)")
        cut = reference["min-cut (Kernighan-Lin)"]
        table = []
        for name, row in rows.items():
            mean, sd = mean_sd(row["step_ms"])
            vs = [f"{100 * (1 - mean / ref):+.1f}%" if ref else "-" for ref in (expert, cut)]
            table.append([name, f"{mean:.2f} ± {sd:.2f}" if len(row["step_ms"]) > 1 else f"{mean:.2f}", *vs])
        print(f"\n{model} (step time in ms, simulated; faster than expert / min-cut, + is faster)\n")
        print_table(["placement", "step ms", "vs expert", "vs min-cut"], table)
        print()
    write_json(f"{args.name}_profiles", profiles)
    print(f"wrote {write_json(args.name, payload)}")


if __name__ == "__main__":
    main()
