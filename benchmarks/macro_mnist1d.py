"""Zoph & Le's macro CNN space on MNIST-1D: REINFORCE against random search, the winners retrained.

Each strategy runs the same budget of children (8 epochs each, Ray executor on this machine's CPUs).
The best child of each run is then retrained from its stored spec for ``--retrain-epochs`` epochs and
its test accuracy reported, against the published 94% of a CNN on MNIST-1D.

python -m benchmarks.macro_mnist1d [--children 100] [--batch 10] [--retrain-epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from benchmarks.common import print_table, write_json
from l2l.runs.executors import ChildTask, run_child
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Context, Spec, load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--retrain-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-macro-')}/macro.db")
    space = load_space("macro", {})
    rows, payload = [], {}
    for strategy in ("reinforce", "random"):
        config = SearchConfig(
            space="macro", strategy=strategy, children=args.children, batch=args.batch, seed=args.seed, executor="ray"
        )
        started = time.perf_counter()
        run_id = Search.start(store, config).run()
        search_s = time.perf_counter() - started
        best = store.top_children(run_id, 1)[0]
        spec = Spec.from_json(best.spec)
        task = ChildTask(best.number, spec, Context(seed=args.seed, budget={"epochs": args.retrain_epochs}))
        started = time.perf_counter()
        retrained = run_child(space, task)
        retrain_s = time.perf_counter() - started
        rewards = [c.reward or 0.0 for c in store.children(run_id)]
        last_quarter = rewards[-len(rewards) // 4 :]
        result: dict[str, Any] = {
            "search_seconds": search_s,
            "best_child": best.number,
            "best_val": best.reward,
            "best_test_8ep": (best.metrics.get("test") or {}).get("test_acc"),
            "architecture": space.describe(spec),
            "params": (best.metrics.get("cost") or {}).get("params"),
            "retrained_val": retrained.val_acc,
            "retrained_test": retrained.test.get("test_acc"),
            "retrain_seconds": retrain_s,
            "mean_reward_last_quarter": sum(last_quarter) / len(last_quarter),
        }
        payload[strategy] = result
        rows.append(
            [
                strategy,
                f"{search_s / 60:.1f}",
                f"{result['mean_reward_last_quarter']:.4f}",
                f"{best.reward:.4f}",
                f"{result['retrained_test']:.4f}",
                f"{int(result['params'] or 0):,}",
                result["architecture"],
            ]
        )
        print(rows[-1], flush=True)
    print(f"MNIST-1D, macro space, {args.children} children each, retrained {args.retrain_epochs} epochs")
    print_table(
        ["strategy", "search min", "last-quarter mean val", "best val", "retrained test", "params", "architecture"],
        rows,
    )
    print(f"wrote {write_json('macro_mnist1d', payload)}")


if __name__ == "__main__":
    main()
