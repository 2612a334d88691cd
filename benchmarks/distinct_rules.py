"""Functionally distinct rules per child: the optimizer search with identities (`-S distinct=true`, the
default) against without (`distinct=false`: the controller avoids token repeats only, as before).

With identities, a REINFORCE sample whose functional hash was proposed before is rejected and another is
drawn (`l2l.controllers.unique.Distinct`); without, it becomes a child that shares the earlier rule's
evaluation. The same seed, settings and tasks for both: what changes is how many of the children are
distinct rules, what the search finds with them, and what the driver spends per child (proposing, with the
hashing, and updating).

python -m benchmarks.distinct_rules [--children 300] [--batch 10] [--units 2] [--scale 0.25]
    [--suite digits-logreg,digits-mlp,friedman-mlp] [--seed 0] [--variants off,on]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import print_table, write_json
from benchmarks.optimizer_discovery import best_distinct, identity_stats, search_stats
from l2l.controllers import Controller
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store

QUICK_SUITE = "digits-logreg,digits-mlp,friedman-mlp"


def timed(controller: Controller, spent: dict[str, float]) -> None:
    """Add the seconds ``controller``'s propose and update take to ``spent``."""
    for name in ("propose", "update"):
        method = getattr(controller, name)

        def wrapper(*args: Any, _method: Any = method, _name: str = name) -> Any:
            t0 = time.perf_counter()
            try:
                return _method(*args)
            finally:
                spent[_name] += time.perf_counter() - t0

        setattr(controller, name, wrapper)


def run(args: argparse.Namespace, distinct: bool) -> dict[str, Any]:
    import tempfile

    options = {"suite": args.suite, "units": args.units, "scale": args.scale, "betas": True, "distinct": distinct}
    config = SearchConfig(
        space="optimizer", space_options=options, strategy="reinforce", children=args.children,
        batch=args.batch, seed=args.seed,
    )  # fmt: skip
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-distinct-')}/search.db")
    search = Search.start(store, config)
    spent = {"propose": 0.0, "update": 0.0}
    timed(search.controller, spent)
    t0 = time.perf_counter()
    run_id = search.run()
    seconds = time.perf_counter() - t0
    children = store.children(run_id)
    stats = search_stats(children)
    curve = []
    for n in sorted({args.children // 4, args.children // 2, 3 * args.children // 4, args.children}):
        head = children[:n]
        best = max((c.reward for c in head if c.reward is not None), default=0.0)
        curve.append({"children": n, "distinct_rules": search_stats(head)["distinct_rules"], "best_reward": best})
    top = best_distinct(children, 3)
    rewards = sorted((c.reward for c in children if c.reward is not None), reverse=True)
    return {
        "distinct": distinct,
        **stats,
        **identity_stats(store, run_id),
        "seconds": seconds,
        "driver_ms_per_child": {k: 1000 * v / args.children for k, v in spent.items()},
        "curve": curve,
        "mean_reward_top10": sum(rewards[:10]) / max(1, len(rewards[:10])),
        "top": [{"rule": r, "reward": c.reward} for c, r in top],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--units", type=int, default=2)
    parser.add_argument("--suite", default=QUICK_SUITE)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="off,on", help="off: tokens only (as before); on: identities")
    parser.add_argument("--name", default="distinct_rules", help="results/<name>.json")
    args = parser.parse_args()
    payload: dict[str, Any] = {"args": vars(args), "runs": []}
    for variant in args.variants.split(","):
        payload["runs"].append(run(args, {"off": False, "on": True}[variant]))
        write_json(args.name, payload)
    rows = []
    for r in payload["runs"]:
        ms = r["driver_ms_per_child"]
        rows.append([
            "on" if r["distinct"] else "off", r["children"], r["distinct_rules"], r["duplicates"],
            int(r["identity_rejected"]), int(r["identity_repeats"]), r["training_runs"], r["runs_saved_by_dedup"],
            f"{r['curve'][-1]['best_reward']:.4f}", f"{r['mean_reward_top10']:.4f}",
            f"{ms['propose']:.1f} + {ms['update']:.1f}", f"{r['seconds']:.0f}",
        ])  # fmt: skip
    print_table(
        ["identities", "children", "distinct rules", "duplicates", "rejected", "repeats", "training runs",
         "runs saved by dedup", "best reward", "top-10 mean", "driver ms/child (propose + update)", "seconds"],
        rows,
    )  # fmt: skip
    print(f"wrote {write_json(args.name, payload)}")


if __name__ == "__main__":
    main()
