"""Optimizer discovery that has to transfer: search on the search suite, funnel, then the held-out scoreboard.

1. REINFORCE searches update rules (`-S suite=search`): each distinct rule (functional hash) is tuned on
   every search task, cheapest first, and scored by 1 / the geometric mean of its final validation loss
   relative to tuned Adam's; a rule worse than 3x Adam on a task stops there. The controller does not
   propose a rule whose functional hash it proposed before (it samples again, up to a bound); a duplicate
   let through at the bound shares the earlier rule's evaluation.
2. Funnel: the best --top rules and Adam re-run on the search tasks at --funnel-scale times the steps
   with --funnel-seeds seeds; the winner is chosen there.
3. Held-out scoreboard: the winner against SGD with momentum, Adam, AdamW, RMSProp, Lion, PowerSign and
   AddSign, tuned the same way, --seeds seeds, on the held-out tasks (never seen before this step).
4. Re-discovery check: the search's best reward against the rewards of Lion, PowerSign and AddSign on
   the same search suite (none of them is a preset the search can pick; they are only measured).

python -m benchmarks.optimizer_discovery [--children 700] [--batch 10] [--units 2] [--search-seeds 1]
    [--workers 2] [--quick] [--name NAME] [--resume-from benchmarks/results/optimizer_discovery.json]

Each phase's results are written as it ends; ``--resume-from`` takes an earlier file's searches (and
re-discovery check) and runs the funnel and the held-out scoreboard on their top rules.

--quick runs a version of a minute or two (12 children, three search tasks at a quarter of their steps, two
held-out tasks, 2 seeds, two baselines): it checks that the pipeline works, not what it finds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import print_table, write_json
from l2l.optsearch.board import interval_text, intervals_apart, run_board
from l2l.optsearch.funnel import BASELINES, funnel, longer
from l2l.optsearch.language import parse, to_formula, to_text
from l2l.optsearch.presets import PRESETS
from l2l.optsearch.reward import references, suite_reward
from l2l.optsearch.simplify import simplified_rule
from l2l.optsearch.suite import resolve_suite
from l2l.optsearch.tuning import Contender
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import ChildRecord, Store

REDISCOVER = ("lion", "powersign", "addsign")


def search_stats(children: list[ChildRecord]) -> dict[str, Any]:
    """Distinct rules, duplicates, failures, halted rules, training runs spent and saved."""
    infos = [c.metrics.get("info") or {} for c in children]
    duplicates = [i for i in infos if "duplicate_of" in i]
    runs = {i["functional_hash"]: i.get("runs", 0) for i in infos if "functional_hash" in i and "duplicate_of" not in i}
    stopped = [i for i in infos if i.get("stopped_at")]
    per_task = [i["runs"] / len(i["tasks"]) for i in infos if i.get("tasks") and "duplicate_of" not in i]
    mean_per_task = sum(per_task) / len(per_task) if per_task else 0.0
    n_tasks = max((len(i.get("tasks") or {}) for i in infos), default=0)
    saved_halving = sum(mean_per_task * (n_tasks - len(i["tasks"])) for i in stopped)
    return {
        "children": len(children),
        "distinct_rules": len({i["functional_hash"] for i in infos if "functional_hash" in i}),
        "duplicates": len(duplicates),
        "failed": sum(c.status == "failed" for c in children),
        "stopped_early": len(stopped),
        "training_runs": sum(runs.values()),
        "runs_saved_by_dedup": sum(runs.get(i["functional_hash"], 0) for i in duplicates),
        "runs_saved_by_halving": round(saved_halving),
        "stopped_at": dict(Counter(i["stopped_at"] for i in stopped)),
    }


def identity_stats(store: Store, run_id: int) -> dict[str, float]:
    """How many samples the controller rejected for repeating a rule's functional hash, and how many repeats it
    let through at its bound (`l2l.controllers.unique.Distinct`), from the run's last update."""
    updates = store.updates(run_id)
    extra = updates[-1].extra if updates else {}
    return {k: float(extra.get(k, 0.0)) for k in ("identity_rejected", "identity_repeats")}


def best_distinct(children: list[ChildRecord], k: int) -> list[tuple[ChildRecord, str]]:
    """The ``k`` best children with distinct functional hashes, with their rule text."""
    out, seen = [], set()
    for c in sorted((c for c in children if c.reward is not None), key=lambda c: -float(c.reward or 0)):
        info = c.metrics.get("info") or {}
        if info.get("functional_hash") not in seen:
            seen.add(info.get("functional_hash"))
            out.append((c, info["rule"]))
    return out[:k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=700)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--units", type=int, default=2)
    parser.add_argument("--suite", default="search")
    parser.add_argument("--scale", type=float, default=1.0, help="Search-time steps, relative to the tasks'.")
    parser.add_argument("--objective", default="loss", choices=("loss", "error"), help="Ratios of val loss or error.")
    parser.add_argument("--search-seeds", type=int, default=1, help="Searches to run (3 for re-discovery).")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--funnel-seeds", type=int, default=3)
    parser.add_argument("--funnel-scale", type=float, default=2.0)
    parser.add_argument("--heldout", default="heldout")
    parser.add_argument("--heldout-scale", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--baselines", default=",".join(BASELINES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="A check of the whole pipeline in a minute or two.")
    parser.add_argument("--name", help="results file name under benchmarks/results (default optimizer_discovery)")
    parser.add_argument(
        "--resume-from",
        help="a results file written by an earlier run: keep its searches and re-discovery check, run the rest",
    )
    args = parser.parse_args()
    if args.quick:
        args.children, args.batch, args.units, args.scale = 12, 4, 1, 0.25
        args.suite, args.top, args.funnel_seeds, args.funnel_scale = "digits-logreg,digits-mlp,friedman-mlp", 2, 2, 0.5
        args.heldout, args.heldout_scale = "mnist1d-logreg,digits-cnn-bn", 0.25
        args.seeds, args.baselines = 2, "adam,lion"
    earlier = json.loads(Path(args.resume_from).read_text()) if args.resume_from else None
    if earlier:  # the funnel runs on the suite, scale and objective the searches ran on, whatever was passed now
        for key in ("suite", "scale", "objective", "units"):
            setattr(args, key, earlier["args"][key])
    started = time.perf_counter()
    tasks = longer(resolve_suite(args.suite), args.scale)
    options = {
        "suite": args.suite,
        "units": args.units,
        "scale": args.scale,
        "betas": not args.quick,
        "objective": args.objective,
    }
    name = args.name or ("optimizer_discovery_quick" if args.quick else "optimizer_discovery")
    payload: dict[str, Any] = {"args": vars(args), "searches": []}
    candidates: list[Contender] = []
    best_by_seed: list[float] = []
    if earlier:  # the searches are done: their top rules go on to the funnel
        payload["searches"], payload["rediscovery"] = earlier["searches"], earlier.get("rediscovery")
        payload["search_args"] = earlier["args"]
        for s in payload["searches"]:
            candidates += [Contender(f"s{s['seed']}#{k}", t["rule"]) for k, t in enumerate(s["top"], start=1)]
            best_by_seed.append(float(s["top"][0]["reward"]) if s["top"] else 0.0)  # for a re-discovery check
    for seed in range(0 if earlier else args.search_seeds):
        store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-discovery-')}/search.db")
        config = SearchConfig(
            space="optimizer", space_options=options, strategy="reinforce", children=args.children,
            batch=args.batch, seed=seed,
        )  # fmt: skip
        t0 = time.perf_counter()
        run_id = Search.start(store, config).run()
        children = store.children(run_id)
        stats = {**search_stats(children), **identity_stats(store, run_id), "seconds": time.perf_counter() - t0}
        stats["seed"] = seed
        top = best_distinct(children, args.top)
        best_by_seed.append(float(top[0][0].reward or 0.0) if top else 0.0)
        stats["top"] = [
            {"rule": r, "reward": c.reward, "formula": to_formula(simplified_rule(parse(r)))} for c, r in top
        ]
        payload["searches"].append(stats)
        print(f"search seed {seed}: {stats['children']} children, {stats['distinct_rules']} distinct rules, "
              f"{stats['duplicates']} duplicates, {stats['identity_rejected']:.0f} samples rejected as duplicates, "
              f"{stats['failed']} failed, {stats['stopped_early']} stopped early, "
              f"{stats['training_runs']} runs ({stats['runs_saved_by_dedup']} saved by de-duplication, "
              f"~{stats['runs_saved_by_halving']} by halving), {stats['seconds']:.0f} s")  # fmt: skip
        candidates += [Contender(f"s{seed}#{k}", r) for k, (_, r) in enumerate(top, start=1)]
        write_json(name, payload)  # each phase is kept as it ends: a later run can --resume-from it
    print_table(["search", "rank", "reward", "formula"],
                [[s["seed"], k, f"{t['reward']:.4f}", t["formula"]] for s in payload["searches"]
                 for k, t in enumerate(s["top"], start=1)])  # fmt: skip

    if not payload.get("rediscovery"):  # the presets the search might re-discover, on the same search suite
        refs = references(tasks, objective=args.objective)
        preset_rewards = {
            p: suite_reward(parse(PRESETS[p]), tasks, refs, objective=args.objective).reward for p in REDISCOVER
        }
        payload["rediscovery"] = {
            p: {"reward": r, "found_as_good": sum(b >= r for b in best_by_seed), "searches": len(best_by_seed)}
            for p, r in preset_rewards.items()
        }
        write_json(name, payload)
    print_table(["preset", "search-suite reward", "searches finding a rule at least as good"],
                [[n, f"{v['reward']:.4f}", f"{v['found_as_good']}/{v['searches']}"]
                 for n, v in payload["rediscovery"].items()])  # fmt: skip

    t0 = time.perf_counter()
    chosen = funnel(
        candidates,
        tasks,
        seeds=args.funnel_seeds,
        scale=args.funnel_scale,
        workers=args.workers,
        objective=args.objective,
    )
    payload["funnel"] = {k: v for k, v in chosen.items() if k != "board"} | {"seconds": time.perf_counter() - t0}
    payload["funnel_board"] = chosen["board"]
    winner = next(c for c in candidates if c.label == chosen["winner"])
    scores = ", ".join(f"{k} {v:.4f}" for k, v in chosen["scores"].items())
    print(f"funnel ({time.perf_counter() - t0:.0f} s): {scores}")
    print(f"winner {winner.label}: {to_formula(simplified_rule(winner.parsed))}   [{winner.rule}]")
    write_json(name, payload)

    t0 = time.perf_counter()
    heldout = longer(resolve_suite(args.heldout), args.heldout_scale)
    found = Contender("found", to_text(simplified_rule(winner.parsed)))
    baselines = [Contender(n, PRESETS[n]) for n in args.baselines.split(",")]
    board = run_board([found, *baselines], heldout, args.seeds, workers=args.workers)
    payload["heldout_board"] = board
    rows, beats = [], 0
    for task in board["tasks"]:
        row = board["cells"][task["name"]]
        mine = row["found"]
        metric = task["metric"]  # intervals clipped to the metric's range, as `l2l optimizers evaluate` shows them
        line = [task["name"], metric, f"{mine['test_mean']:.4f} {interval_text(mine, metric)}"]
        for b in baselines:
            cell = row[b.label]
            mark = "*" if intervals_apart(mine, cell) else ""
            line.append(f"{cell['test_mean']:.4f} {interval_text(cell, metric)}{mark}")
        rows.append(line)
        beats += board["winners"][task["name"]] == "found"
    print_table(["task", "metric", "found", *[b.label for b in baselines]], rows)
    print(f"held-out ({time.perf_counter() - t0:.0f} s): found wins {beats} of {len(board['tasks'])} tasks; "
          "* marks intervals apart from found's")  # fmt: skip
    payload["seconds"] = time.perf_counter() - started
    print(f"total {payload['seconds']:.0f} s")
    print(f"wrote {write_json(name, payload)}")


if __name__ == "__main__":
    main()
