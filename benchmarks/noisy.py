"""Noisy rewards on NAS-Bench-201: finding the best cell and knowing it.

Each query returns the 12-epoch validation accuracy plus Gaussian noise of sd ``--noise`` points, drawn
from the child's seed (``nb201 -S noise=SD``); the architecture a search names as best is scored by its
noiseless 200-epoch test accuracy. A search names its best two ways:

- ``mean``: the highest estimated mean over the evaluations of each architecture
  (`l2l.controllers.noise`, what ``l2l runs best`` reports);
- ``single``: the child with the highest single reward (``l2l runs best --by single``, what l2l did before).

Reported per strategy and budget: the mean test accuracy of the named cell, and in brackets the share
of seeds naming the optimum (94.37 on CIFAR-10). Also: re-evaluations spent, and how often the optimum
was evaluated at all ("found").

    python -m benchmarks.noisy [--seeds 100] [--seed-offset 1000] [--noise 0.25,0.5,1.0]
        [--strategies reinforce+screen,reinforce+screen+reeval,evolution,tpe,random] [--budgets 100,200,400]
        [-C key=value ...] [--name NAME]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from benchmarks.common import mean_sd, print_table, write_json
from benchmarks.nb201 import SETTINGS, batch_of, parse_row
from l2l.controllers import make_controller
from l2l.controllers.noise import Evaluations
from l2l.runs.config import UsageError, parse_assignments
from l2l.runs.search import child_seed
from l2l.search_spaces import Context, load_space
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.nb201 import load_table

STRATEGIES = "reinforce+screen,reinforce+screen+reeval,evolution,tpe,random"
Query = tuple[tuple[int, ...], float, float, bool]  # (architecture, reward, test accuracy %, re-evaluation)


def trajectory(strategy: str, seed: int, queries: int, noise: float, settings: dict[str, Any]) -> list[Query]:
    """Every query of one search, in order."""
    space = load_space("nb201", {"noise": noise} if noise else {})
    own = SETTINGS.get(strategy.split("+")[0], {})
    constraints = Constraints.of(space)
    controller = make_controller(
        strategy, space.decisions(), seed, {**own, **settings}, constraints, exact=space.exact_rewards()
    )
    out: list[Query] = []
    while len(out) < queries:
        proposals = controller.propose(min(batch_of(strategy.removesuffix("+reeval")), queries - len(out)))
        rewards = []
        for p in proposals:
            result = space.evaluate(space.decode(p.tokens), Context(seed=child_seed(seed, len(out))))
            out.append((p.tokens, float(result.reward), 100.0 * result.test["test_acc"], p.policy_version < 0))
            rewards.append(float(result.reward))
        controller.update(proposals, rewards)
    return out


def named(traj: list[Query], budget: int, by: str) -> float:
    """The test accuracy of the cell the search names after ``budget`` queries."""
    head = traj[:budget]
    if by == "single":
        return max(head, key=lambda q: q[1])[2]
    best = Evaluations.of((q[0], q[1]) for q in head).estimates(limit=1)[0].key
    return next(q[2] for q in head if q[0] == best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--seed-offset", type=int, default=1000, help="first seed (settings were chosen on 0-49)")
    parser.add_argument("--noise", default="0.25,0.5,1.0", help="noise sds in points, comma-separated")
    parser.add_argument("--strategies", default=STRATEGIES, help="rows: STRATEGY[:key=value;...], comma-separated")
    parser.add_argument("--budgets", default="100,200,400")
    parser.add_argument("-C", dest="settings", action="append", default=[], help="controller setting key=value")
    parser.add_argument("--name", default="noisy", help="results file benchmarks/results/NAME.json")
    args = parser.parse_args()
    try:
        settings = parse_assignments(args.settings, "-C")
        rows_asked = [parse_row(row) for row in args.strategies.split(",")]
    except UsageError as exc:
        parser.error(str(exc))
    torch.set_num_threads(1)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    optimum = max(row["c10_test_200ep"] for row in load_table().values())
    payload: dict[str, Any] = {"seeds": args.seeds, "seed_offset": args.seed_offset, "budgets": budgets,
                               "settings": settings, "optimum": optimum, "results": {}}  # fmt: skip
    for noise in (float(x) for x in args.noise.split(",")):
        rows = []
        for (strategy, own), label in zip(rows_asked, args.strategies.split(","), strict=True):
            started = time.perf_counter()
            seeds = range(args.seed_offset, args.seed_offset + args.seeds)
            trajs = [trajectory(strategy, s, max(budgets), noise, {**settings, **own}) for s in seeds]
            result: dict[str, Any] = {}
            cells: dict[str, list[str]] = {"mean": [], "single": []}
            for b in budgets:
                for by in ("mean", "single"):
                    reported = [named(t, b, by) for t in trajs]
                    m, _ = mean_sd(reported)
                    hit = sum(r >= optimum - 1e-9 for r in reported) / len(reported)
                    result[f"{by}@{b}"] = {"mean": m, "named_optimum": hit, "reported": reported}
                    cells[by].append(f"{m:.2f} ({hit:.0%})")
                found = sum(any(q[2] >= optimum - 1e-9 for q in t[:b]) for t in trajs) / len(trajs)
                again = sum(sum(q[3] for q in t[:b]) for t in trajs) / len(trajs)
                result[f"found@{b}"], result[f"reevaluations@{b}"] = found, again
            seconds = time.perf_counter() - started
            payload["results"][f"{label} noise={noise}"] = {**result, "seconds": seconds}
            last = max(budgets)
            for by in ("mean", "single"):
                rows.append([label, by, *cells[by], f"{result[f'found@{last}']:.0%}",
                             f"{result[f'reevaluations@{last}']:.0f}", f"{seconds:.0f}"])  # fmt: skip
        print(f"noise sd {noise} points, seeds {args.seed_offset}-{args.seed_offset + args.seeds - 1}: test accuracy "
              f"of the named cell, mean (share naming the optimum {optimum:.2f})")  # fmt: skip
        print_table(["strategy", "named by", *[f"{b} queries" for b in budgets], f"found by {max(budgets)}",
                     "re-evaluations", "seconds"], rows)  # fmt: skip
    print(f"wrote {write_json(args.name, payload)}")


if __name__ == "__main__":
    main()
