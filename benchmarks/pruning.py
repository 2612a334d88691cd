"""Compute saved and quality lost by pruning children early with Optuna's pruners, on the real `mlp` space.

python -m benchmarks.pruning [--children 100] [--epochs 10] [--seeds 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import mean_sd, print_table, run_search, write_json
from l2l.runs.search import SearchConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--pruners", default="none,median,hyperband")
    args = parser.parse_args()
    rows, payload = [], {}
    for name in args.pruners.split(","):
        per_seed: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            started = time.perf_counter()
            config = SearchConfig(
                space="mlp",
                strategy="reinforce",
                children=args.children,
                batch=10,
                seed=seed,
                pruner=None if name == "none" else name,
                space_options={"epochs": args.epochs},
            )
            store, run = run_search(config)
            children = store.children(run)
            best = max(children, key=lambda c: c.reward if c.reward is not None else -1.0)
            per_seed.append(
                {
                    "epochs_trained": sum(len(c.curves.get("val_acc") or []) for c in children),
                    "pruned": sum(c.metrics.get("info", {}).get("pruned_at") is not None for c in children),
                    "train_seconds": sum((c.metrics.get("cost") or {}).get("train_time_s", 0.0) for c in children),
                    "best": best.reward,
                    "best_test": (best.metrics.get("test") or {}).get("test_acc"),
                    "seconds": time.perf_counter() - started,
                }
            )
        payload[name] = per_seed

        def fmt(key: str, digits: int = 4, seeds: list[dict[str, Any]] = per_seed) -> str:
            m, sd = mean_sd([float(s[key]) for s in seeds])
            return f"{m:.{digits}f} ± {sd:.{digits}f}"

        rows.append(
            [name, fmt("pruned", 1), fmt("epochs_trained", 0), fmt("train_seconds", 1), fmt("best"), fmt("best_test")]
        )
    full = args.children * args.epochs
    print(
        f"mlp space, reinforce, {args.children} children x {args.epochs} epochs ({full} epochs unpruned), "
        f"{args.seeds} seeds"
    )
    print_table(["pruner", "children pruned", "epochs trained", "training seconds", "best val", "best's test"], rows)
    print(f"wrote {write_json('pruning', {'args': vars(args), 'results': payload})}")


if __name__ == "__main__":
    main()
