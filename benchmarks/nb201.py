"""NAS-Bench-201 search efficiency: every strategy x query budgets x seeds, by table lookup.

Protocol: the reward is the 12-epoch validation accuracy; at each budget the reported number is the
200-epoch test accuracy of the architecture with the best reward so far. Evolution is regularized
evolution with population 10 and tournament sample 3, one child per step, as in the reference figures.

    python -m benchmarks.nb201 [--seeds 100] [--seed-offset 1000] [--dataset cifar10] [--strategies random,ppo]
        [--budgets 25,50,100,200,400] [-C key=value ...] [--name NAME] [--canonical]

``--strategies`` lists rows, each a strategy name (``reinforce``, ``reinforce+screen``, ``evolution+screen``,
...) with optional settings of its own after a colon, separated by semicolons: ``reinforce:preset=zoph_le``
is the paper's REINFORCE. ``-C key=value`` sets a controller setting of every row (as ``l2l search -C``),
e.g. ``--strategies reinforce+screen -C screen_local=1``; values are read as ``l2l search -C`` reads them.
``--canonical`` searches the space's 6,466 distinct computations (``nb201 -S canonical=true``: one query per
distinct topology, each proposed as its canonical cell); the optimum is then the best canonical cell's.
``--name`` names the results file; ``--merge`` reruns some strategies into an existing file of the same
protocol and keeps its other strategies (the file then records each strategy's settings).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import cache
from typing import Any

import torch

from benchmarks.common import RESULTS, mean_sd, print_table, write_json
from l2l.controllers import make_controller
from l2l.runs.config import UsageError, parse_assignments
from l2l.search_spaces import Context, SearchSpace, load_space
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.nb201 import DATASETS, OPS, arch_str, canonical_cells, load_table

BUDGETS = (25, 50, 100, 200, 400)
SETTINGS: dict[str, dict[str, Any]] = {"evolution": {"population": 10, "sample": 3}}
# children per controller update; evolution is steady-state (one at a time), as in the reference figures.
# A screened row (STRATEGY+screen) proposes 4 at a time whatever it wraps: the surrogate is refitted once a
# batch, so every screened row gets the same number of fits.
BATCH = {"random": 10, "evolution": 1, "reinforce": 4, "ppo": 4, "tpe": 1}
SCREENED_BATCH = 4


def parse_row(row: str) -> tuple[str, dict[str, Any]]:
    """(strategy, its own settings) of one ``--strategies`` entry ``STRATEGY[:key=value;key=value]``."""
    strategy, _, assignments = row.partition(":")
    return strategy, parse_assignments([a for a in assignments.split(";") if a], f"--strategies {row}")


def batch_of(strategy: str) -> int:
    """Children per controller update of ``strategy`` in this benchmark."""
    return SCREENED_BATCH if strategy.endswith("+screen") else BATCH.get(strategy, 10)


@cache
def nb201_space(dataset: str, canonical: bool) -> SearchSpace:
    """One space per dataset and form: its constraints are enumerated once, not once per seed."""
    return load_space("nb201", {"dataset": dataset, "canonical": canonical})


def trajectory(
    strategy: str,
    seed: int,
    queries: int,
    dataset: str,
    batch: int,
    settings: dict[str, Any] | None = None,
    canonical: bool = False,
) -> list[tuple[float, float]]:
    """(reward, reported test accuracy in percent) of every query, in order."""
    space = nb201_space(dataset, canonical)
    own = SETTINGS.get(strategy.removesuffix("+screen"), {})
    settings = {**own, **(settings or {})}
    controller = make_controller(strategy, space.decisions(), seed, settings, Constraints.of(space))
    out: list[tuple[float, float]] = []
    while len(out) < queries:
        proposals = controller.propose(min(batch, queries - len(out)))
        rewards = []
        for p in proposals:
            result = space.evaluate(space.decode(p.tokens), Context())
            out.append((result.reward, 100.0 * result.test["test_acc"]))
            rewards.append(result.reward)
        controller.update(proposals, rewards)
    return out


def reported_at(traj: list[tuple[float, float]], budget: int) -> float:
    """Test accuracy of the best-reward architecture among the first ``budget`` queries."""
    return max(traj[:budget], key=lambda rt: rt[0])[1]


def best_so_far(traj: list[tuple[float, float]]) -> list[float]:
    """The reported test accuracy after each query (that of the best reward so far)."""
    out, best = [], (float("-inf"), 0.0)
    for reward, test in traj:
        if reward > best[0]:
            best = (reward, test)
        out.append(best[1])
    return out


PROTOCOL = ("dataset", "seeds", "seed_offset", "budgets", "canonical")
PROTOCOL_DEFAULTS = {"canonical": False}


def merged(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the strategies of the results file ``name`` that this run does not rerun; the
    file must hold the same protocol (dataset, seeds, first seed, budgets)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return payload
    old = json.loads(path.read_text())
    # files written before --canonical existed searched all cells
    differ = [k for k in PROTOCOL if old.get(k, PROTOCOL_DEFAULTS.get(k)) != payload.get(k, PROTOCOL_DEFAULTS.get(k))]
    if differ:
        raise ValueError(
            f"--merge: {path} was run with other "
            + ", ".join(f"{k} ({old.get(k)!r}, not {payload.get(k)!r})" for k in differ)
        )
    kept = dict(old.get("settings_by_strategy", {}))
    for strategy in old.get("results", {}):
        kept.setdefault(strategy, old.get("settings", {}))
    return {
        **payload,
        "results": dict(old.get("results", {})),
        "curves": dict(old.get("curves", {})),
        "settings_by_strategy": kept,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--dataset", default="cifar10", choices=sorted(DATASETS))
    parser.add_argument(
        "--strategies",
        default="random,evolution,tpe,reinforce:preset=zoph_le,reinforce,reinforce+screen,evolution+screen,random+screen",
        help="rows: STRATEGY[:key=value;...], comma-separated",
    )
    parser.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="first seed (the screening settings were tuned on seeds 0-99; 1000 on are held out)",
    )
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="query budgets to report")
    parser.add_argument("--canonical", action="store_true", help="search the 6,466 distinct computations")
    parser.add_argument("-C", dest="settings", action="append", default=[], help="controller setting key=value")
    parser.add_argument("--name", help="results file benchmarks/results/NAME.json (default nb201_DATASET)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other strategies of an existing results file of the same protocol",
    )
    args = parser.parse_args()
    budgets = sorted({int(b) for b in args.budgets.split(",")})
    if budgets[0] < 1:
        parser.error(f"--budgets takes counts >= 1, got {args.budgets}")
    try:
        settings = parse_assignments(args.settings, "-C")
        rows_asked = [parse_row(row) for row in args.strategies.split(",")]
    except UsageError as exc:
        parser.error(str(exc))
    # the controllers' networks are tiny: more threads only contend (two benchmark processes on 2 cores ran ~40x slower)
    torch.set_num_threads(1)
    prefix = DATASETS[args.dataset]
    table = load_table()
    rows_searched = list(table.values())
    if args.canonical:  # only the canonical cells can be found
        rows_searched = [table[arch_str([OPS[t] for t in cell])] for cell in canonical_cells().values()]
    optimum = max(row[f"{prefix}_test_200ep"] for row in rows_searched)  # 94.37 on CIFAR-10, as published
    top_reward = max(row[f"{prefix}_val_12ep"] for row in rows_searched)
    payload: dict[str, Any] = {
        "dataset": args.dataset,
        "seeds": args.seeds,
        "seed_offset": args.seed_offset,
        "batch": {**BATCH, "STRATEGY+screen": SCREENED_BATCH},
        "budgets": budgets,
        "canonical": args.canonical,
        "settings": settings,
        "results": {},
        "curves": {},
    }
    name = args.name or f"nb201_{args.dataset}"
    if args.merge:
        try:
            payload = merged(name, payload)
        except ValueError as exc:
            parser.error(str(exc))
    rows: list[list[str]] = []
    reward_rows: list[list[str]] = []
    for (strategy_name, own), label in zip(rows_asked, args.strategies.split(","), strict=True):
        started = time.perf_counter()
        row_settings = {**settings, **own}
        trajs = [
            trajectory(
                strategy_name, s, max(budgets), args.dataset, batch_of(strategy_name), row_settings, args.canonical
            )
            for s in range(args.seed_offset, args.seed_offset + args.seeds)
        ]
        strategy = label
        cells, reward_cells = [], []
        per_budget = {}
        for b in budgets:
            reported = [reported_at(t, b) for t in trajs]
            m, sd = mean_sd(reported)
            hit = sum(r >= optimum - 1e-9 for r in reported) / len(reported)
            # the search's own target: the best reward found, and how often it is the table's best
            best = [100.0 * max(r for r, _ in t[:b]) for t in trajs]
            top = sum(r >= top_reward - 1e-9 for r in best) / len(best)
            per_budget[b] = {
                "mean": m,
                "sd": sd,
                "found_optimum": hit,
                "reported": reported,
                "best_reward": best,
                "found_best_reward": top,
            }
            cells.append(f"{m:.2f} ± {sd:.2f} ({hit:.0%})")
            reward_cells.append(f"{mean_sd(best)[0]:.2f} ({top:.0%})")
        reward_rows.append([strategy, *reward_cells])
        runs = [best_so_far(t) for t in trajs]
        stats = [mean_sd([r[q] for r in runs]) for q in range(max(budgets))]
        payload["curves"][strategy] = {"mean": [m for m, _ in stats], "sd": [sd for _, sd in stats]}
        payload["results"][strategy] = per_budget
        if "settings_by_strategy" in payload:
            payload["settings_by_strategy"][strategy] = row_settings
        rows.append([strategy, *cells, f"{time.perf_counter() - started:.0f}"])
    form = " (canonical cells)" if args.canonical else ""
    print(
        f"NAS-Bench-201 {args.dataset}{form}, {args.seeds} seeds: 200-epoch test accuracy of the best-reward cell, "
        f"mean ± sd (share of seeds at the optimum {optimum:.2f})"
    )
    if settings:
        print("controller settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print_table(["strategy", *[f"{b} queries" for b in budgets], "seconds"], rows)
    print(f"best reward found (12-epoch validation), mean (share of seeds at the table's best, {top_reward:.2f})")
    print_table(["strategy", *[f"{b} queries" for b in budgets]], reward_rows)
    print(f"wrote {write_json(name, payload)}")


if __name__ == "__main__":
    main()
