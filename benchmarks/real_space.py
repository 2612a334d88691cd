"""REINFORCE against random search on the real `mlp` space (MLPs trained on digits): rewards by quarter.

python -m benchmarks.real_space [--children 100] [--batch 10] [--seeds 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from benchmarks.common import mean_sd, print_table, rewards, run_search, write_json
from l2l.runs.search import SearchConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--space", default="mlp")
    args = parser.parse_args()
    rows, payload = [], {}
    for strategy in ("reinforce", "random"):
        per_seed: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            started = time.perf_counter()
            config = SearchConfig(
                space=args.space, strategy=strategy, children=args.children, batch=args.batch, seed=seed
            )
            store, run = run_search(config)
            children = store.children(run)
            r = rewards(children)
            q = len(r) // 4
            best = max(children, key=lambda c: c.reward if c.reward is not None else -1.0)
            per_seed.append(
                {
                    "seed": seed,
                    "first_quarter": sum(r[:q]) / q,
                    "last_quarter": sum(r[-q:]) / q,
                    "mean": sum(r) / len(r),
                    "best": best.reward,
                    "best_test_acc": (best.metrics.get("test") or {}).get("test_acc"),
                    "failed": sum(c.status == "failed" for c in children),
                    "seconds": time.perf_counter() - started,
                }
            )
        payload[strategy] = per_seed

        def fmt(key: str, seeds: list[dict[str, Any]] = per_seed) -> str:
            m, sd = mean_sd([s[key] for s in seeds])
            return f"{m:.4f} ± {sd:.4f}"

        rows.append(
            [
                strategy,
                fmt("first_quarter"),
                fmt("last_quarter"),
                fmt("mean"),
                fmt("best"),
                fmt("best_test_acc"),
                f"{sum(s['seconds'] for s in per_seed) / len(per_seed):.0f}",
            ]
        )
    print(
        f"space {args.space}: {args.children} children, batch {args.batch}, {args.seeds} seeds (mean ± sd over seeds)"
    )
    print_table(["strategy", "first quarter", "last quarter", "all children", "best val", "best's test", "s/run"], rows)
    print(f"wrote {write_json('real_space', {'args': vars(args), 'results': payload})}")


if __name__ == "__main__":
    main()
