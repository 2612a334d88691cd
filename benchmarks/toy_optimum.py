"""Children needed to find the toy space's known optimum: REINFORCE against random search, over 20 seeds.

python -m benchmarks.toy_optimum [--seeds 20] [--budget 5000] [--batch 10] [--strategies reinforce+screen,random]
    [--name toy_optimum]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import print_table, write_json
from l2l.controllers import make_controller
from l2l.search_spaces import Context, load_space


def children_to_optimum(strategy: str, seed: int, budget: int, batch: int, space_options: dict[str, int]) -> int | None:
    """How many children the strategy samples until it proposes the optimum (None if not within budget)."""
    space = load_space("toy", space_options)
    target = space.optimum()
    controller = make_controller(strategy, space.decisions(), seed)
    seen = 0
    while seen < budget:
        proposals = controller.propose(min(batch, budget - seen))
        rewards = []
        for p in proposals:
            seen += 1
            if p.tokens == target:
                return seen
            rewards.append(space.evaluate(space.decode(p.tokens), Context(seed=seen)).reward)
        controller.update(proposals, rewards)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument(
        "--strategies", default="reinforce+screen,random", help="comma-separated (the default: the README's rows)"
    )
    parser.add_argument("--name", default="toy_optimum", help="results/NAME.json")
    args = parser.parse_args()
    options = {"layers": args.layers}
    size = 1
    for d in load_space("toy", options).decisions():
        size *= d.n_choices**d.width
    results: dict[str, list[int | None]] = {}
    rows = []
    for strategy in [name.strip() for name in args.strategies.split(",") if name.strip()]:
        started = time.perf_counter()
        found = [children_to_optimum(strategy, s, args.budget, args.batch, options) for s in range(args.seeds)]
        results[strategy] = found
        hits = sorted(n for n in found if n is not None)
        median = statistics.median(hits) if len(hits) * 2 > len(found) else f">{args.budget}"
        rows.append(
            [
                strategy,
                f"{len(hits)}/{len(found)}",
                median,
                min(hits, default="-"),
                max(hits, default="-"),
                f"{time.perf_counter() - started:.1f}",
            ]
        )
    print(f"toy space, {size:,} candidates, budget {args.budget} children, batch {args.batch}, {args.seeds} seeds")
    print_table(["strategy", "found optimum", "median children", "min", "max", "seconds"], rows)
    path = write_json(args.name, {"budget": args.budget, "batch": args.batch, "candidates": size, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
