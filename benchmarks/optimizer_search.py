"""Neural optimizer search on the child task, and the best rule against tuned SGD with momentum and Adam.

Runs a search of the `optimizer` space (default 200 children, REINFORCE, batch 10), then retunes the
best rule's learning rate on the same grid as the baselines and trains all three on the child task
(a small CNN on digits) and on a task the search never saw (an MLP on a generated 10-class problem),
over several seeds of the tasks' initial weights: seed 0 is the one the search used.

python -m benchmarks.optimizer_search [--children 200] [--batch 10] [--units 1] [--strategy reinforce]
    [--eval-seeds 3] [--storage sqlite:///optsearch.db]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from typing import Any

from benchmarks.common import RESULTS, mean_sd, print_table, write_json
from l2l.optsearch.language import to_formula, to_text
from l2l.optsearch.plots import plot_curves, plot_heatmaps, tuned_curves
from l2l.optsearch.task import CHILD_TASK, UNSEEN_TASK
from l2l.runs.cli.optimizers import best_rules
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=200)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--units", type=int, default=1)
    parser.add_argument("--strategy", default="reinforce")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seeds", type=int, default=3)
    parser.add_argument("--storage", default=None)
    args = parser.parse_args()
    storage = args.storage or f"sqlite:///{tempfile.mkdtemp(prefix='l2l-nos-')}/nos.db"
    store = Store(storage)
    config = SearchConfig(
        space="optimizer",
        space_options={"units": args.units},
        strategy=args.strategy,
        children=args.children,
        batch=args.batch,
        seed=args.seed,
    )
    started = time.perf_counter()
    run_id = Search.start(store, config).run()
    search_s = time.perf_counter() - started
    counts = store.count_children(run_id)
    ranked = best_rules(store, run_id, 3)
    top = [c for c, _ in ranked]
    rules = [rule for _, rule in ranked]
    best = rules[0]
    print(f"run {run_id} ({storage}): {args.children} children in {search_s:.0f} s, {counts['failed']} failed")
    print(f"best rule: {to_formula(best)}   [{to_text(best)}]  reward {top[0].reward:.4f}")
    rows: list[list[str]] = []
    payload: dict[str, Any] = {
        "run": run_id,
        "config": config.to_json(),
        "search_seconds": search_s,
        "children": counts,
        "best_rule": to_text(best),
        "formula": to_formula(best),
        "search_reward": top[0].reward,
        "tasks": {},
    }
    curves_seed0: dict[str, Any] = {}
    for task in (CHILD_TASK, UNSEEN_TASK):
        per_label: dict[str, list[float]] = {}
        lrs: dict[str, list[float]] = {}
        for seed in range(args.eval_seeds):
            curves = tuned_curves([("found", best)], dataclasses.replace(task, seed=seed))
            if seed == 0:
                curves_seed0[task.name] = curves
            for c in curves:
                per_label.setdefault(c.label, []).append(c.val_acc if c.val_acc is not None else 0.0)
                lrs.setdefault(c.label, []).append(c.lr if c.lr is not None else float("nan"))
        payload["tasks"][task.name] = {"val_acc": per_label, "best_lr": lrs}
        for label, accs in per_label.items():
            m, sd = mean_sd(accs)
            rows.append(
                [task.name, label, f"{accs[0]:.4f}", f"{m:.4f} ± {sd:.4f}", " ".join(f"{x:g}" for x in lrs[label])]
            )
    print_table(
        ["task", "optimizer", "val acc (seed 0)", f"val acc ({args.eval_seeds} seeds)", "best lr per seed"], rows
    )
    out = RESULTS / "optimizer_search"
    heat = plot_heatmaps(rules, out / "update_heatmaps.png")
    curves_png = plot_curves(curves_seed0, out / "training_curves.png")
    payload["plots"] = [str(heat), str(curves_png)]
    print(f"wrote {heat} and {curves_png}")
    print(f"wrote {write_json('optimizer_search', payload)}")


if __name__ == "__main__":
    main()
