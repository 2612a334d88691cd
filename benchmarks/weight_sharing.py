"""Weight-sharing search (ENAS) measured: ranking, quality and cost, language modelling, micro end to end.

``ranking``: `nb201_cell` on MNIST-1D. Weight-sharing searches (default settings of `l2l search
--weight-sharing`) driven by REINFORCE (ENAS) and by random search under uniform sampling (the
baseline of Yu et al. 2020) on held-out search seeds; after each, every cell of the ground truth
(`python -m benchmarks.ws_ground_truth`) is scored with the final shared weights on the validation
split, and the Kendall tau between those scores and the cells' stand-alone accuracies is reported,
with the ground truth's own ceiling (the tau between its two training seeds). The derived cell is
retrained from scratch (seeds 0, 1): its test accuracy, its rank in the ground-truth sample, and the
share of parameter-free ops (skip, pool, none) in it. ``--full`` adds a full-training REINFORCE search of
100 children for the cost and quality comparison.

``ranking --space macro``: the same against `python -m benchmarks.ws_ground_truth --space macro`, for
REINFORCE and random search on uniform-trained weights and, for comparison, REINFORCE on weights keyed by
shape only (how `macro` shared before its layers' weights were sliced: nearly every architecture got
weights of its own).

``lm``: `rnn_cell` (ENAS cell, packaged corpus) with weight sharing; the derived cell retrained with the
space's budget (seeds 0-2) against LSTM and GRU whose hidden size gives the same parameter count,
every model at its best learning rate of 0.003, 0.01, 0.02 (validation, seed 0). ``--cells-from FILE``
retrains the cells that earlier results derived instead of searching again.

``micro``: the ENAS micro space with weight sharing on digits, derived and retrained.

python -m benchmarks.weight_sharing ranking [--seeds 1 2 3] [--full] [--tag _heldout] [--space macro]
python -m benchmarks.weight_sharing report [--tag _heldout]     # taus again, against a ground truth with more seeds
python -m benchmarks.weight_sharing lm [--seeds 1] [--reuse-baselines] [--cells-from FILE ...] [--tag _x]
python -m benchmarks.weight_sharing micro
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import kendalltau

from benchmarks.common import RESULTS, print_table, run_search, write_json
from benchmarks.ws_ground_truth import load_ground_truth
from l2l.nas.shared import SharedWeights, shape_key
from l2l.runs.search import SearchConfig
from l2l.runs.store import Store
from l2l.runs.weight_sharing import WeightSharingSearch
from l2l.search_spaces import Context, SearchSpace, Spec, load_space
from l2l.search_spaces.sharing import plain_metrics

RETRAIN_SEEDS = (0, 1)
LM_LRS = (0.003, 0.01, 0.02)  # every language model's learning-rate grid: the baselines' and the derived cells'
# (label, strategy, what trains the shared weights): ENAS proper, REINFORCE on uniformly trained weights (the
# default of `l2l search --weight-sharing`), and random search on them (Yu et al.'s baseline)
# ... and both on weights trained under FairNAS's strict fairness (`-W sampler=fair`)
METHODS = (
    ("ENAS: controller-trained weights", "reinforce", "controller"),
    ("REINFORCE, uniform-trained weights", "reinforce", "uniform"),
    ("random, uniform-trained weights", "random", "uniform"),
    ("REINFORCE, fair-trained weights", "reinforce", "fair"),
    ("random, fair-trained weights", "random", "fair"),
)
# macro: the two uniform-trained methods, and the default with weights keyed by shape (before slots)
MACRO_METHODS = (
    ("REINFORCE, uniform-trained weights", "reinforce", "uniform"),
    ("random, uniform-trained weights", "random", "uniform"),
    ("REINFORCE, uniform-trained, keyed by shape", "reinforce", "uniform:shape"),
)


def _store() -> Store:
    return Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-ws-')}/ws.db")


def ws_search(
    space: str, options: dict[str, Any], strategy: str, seed: int, ws: dict[str, Any], by_shape: bool = False
) -> dict[str, Any]:
    """Run one weight-sharing search in this process; the search object (weights in memory) and its figures.
    ``by_shape``: key every weight by the child's name and shape only (what `macro` shared before its slots)."""
    store = _store()
    config = SearchConfig(space=space, space_options=options, strategy=strategy, seed=seed, weight_sharing=ws)
    search = WeightSharingSearch.start(store, config)
    if by_shape:
        network = search.network
        search.weights = SharedWeights(lambda spec: network.build(spec, seed), lambda spec: shape_key, search.device)
    started, cpu = time.perf_counter(), time.process_time()
    run_id = search.run()
    derived = store.children(run_id, "derived")[0]
    return {
        "search": search,
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "derived": derived,
        "epochs": [e.__dict__ for e in store.epochs(run_id)],
    }


def retrain(space: SearchSpace, spec: Spec, seeds: tuple[int, ...]) -> dict[str, float]:
    """Train ``spec`` from scratch with the space's budget; mean validation and test figures over ``seeds``."""
    results = [space.evaluate(spec, Context(seed=s)) for s in seeds]
    ok = [r for r in results if r.ok]
    out = {"val": statistics.fmean(r.reward for r in ok) if ok else float("nan")}
    for key in ("test_acc", "test_bpc"):
        if ok and key in ok[0].test:
            out[key] = statistics.fmean(float(r.test[key]) for r in ok)
    if ok and "params" in ok[0].cost:
        out["params"] = ok[0].cost["params"]
    return out


def split_half_tau(rows: list[dict[str, Any]]) -> float:
    """The ground truth's own ceiling: the Kendall tau between the mean accuracies of its even and its odd
    training seeds (what any scorer's tau against the truth is bounded by, roughly)."""
    even = [statistics.fmean(r["val_accs"][0::2]) for r in rows]
    odd = [statistics.fmean(r["val_accs"][1::2]) for r in rows]
    return float(kendalltau(even, odd).statistic)


def full_ceiling(split_tau: float) -> float:
    """The tau a perfect scorer would reach against the mean over all the truth's seeds, estimated from the
    split-half tau: to Pearson's r (Greiner's relation, for normal data), Spearman-Brown from half the seeds
    to all, and the correlation with the truth's true value (the square root of its reliability) back to tau."""
    r = math.sin(math.pi / 2 * split_tau)
    reliability = max(0.0, 2 * r / (1 + r))
    return 2 / math.pi * math.asin(math.sqrt(reliability))


def same_seeds_test(rows: list[dict[str, Any]]) -> list[float]:
    """Each row's test accuracy over the training seeds a derived architecture is retrained with: a rank
    compares like with like (a mean over more seeds is less spread, so a 2-seed mean would rank high)."""
    return [statistics.fmean(r["test_accs"][: len(RETRAIN_SEEDS)]) for r in rows]


def report(path: str, space: str = "nb201_cell") -> None:
    """Recompute the taus of a written ranking result against the current ground truth (more seeds)."""
    rows = load_ground_truth(space)["rows"]
    data = json.loads(Path(path).read_text())
    val, test = [r["val_acc"] for r in rows], [r["test_acc"] for r in rows]
    ranked = same_seeds_test(rows)
    for run in data["runs"]:
        run["tau_val"] = float(kendalltau(run["scores"], val).statistic)
        run["tau_test"] = float(kendalltau(run["scores"], test).statistic)
        run["derived_rank"] = sum(t > run["derived_test_acc"] for t in ranked) + 1
        run["derived_top_pct"] = 100.0 * run["derived_rank"] / len(rows)
        print(
            run["method"],
            run["seed"],
            f"tau {run['tau_val']:.3f} / {run['tau_test']:.3f}",
            f"derived test {run['derived_test_acc']:.4f} rank {run['derived_rank']}/{len(rows)}",
            f"param-free {run['parameter_free']} cpu {run['search_cpu_s']:.0f} s",
        )
    full = data.get("full_search")
    if full:
        full["best_rank"] = sum(t > full["best_test_acc"] for t in ranked) + 1
        print("full search", full)
    data["ceiling_tau"] = split_half_tau(rows)
    data["ceiling_tau_full"] = full_ceiling(data["ceiling_tau"])
    data["truth_seeds"] = len(rows[0]["val_accs"])
    data["best_of_sample_test_acc"] = max(ranked)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True))
    print(
        f"ceiling (split-half of {data['truth_seeds']} seeds): {data['ceiling_tau']:.3f}; a perfect scorer against "
        f"the mean of all {data['truth_seeds']}, estimated: {data['ceiling_tau_full']:.3f}"
    )


def ranking(
    seeds: list[int],
    full: bool,
    space_name: str = "nb201_cell",
    settings: dict[str, Any] | None = None,
    only: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Each method's searches on ``seeds`` (``only``: the methods whose label holds one of these)."""
    truth = load_ground_truth(space_name)
    rows = truth["rows"]
    val = [r["val_acc"] for r in rows]
    test = [r["test_acc"] for r in rows]
    ceiling = split_half_tau(rows)
    sorted_test = sorted(same_seeds_test(rows), reverse=True)
    out: dict[str, Any] = {"cells": len(rows), "ceiling_tau": ceiling, "settings": settings or {}, "runs": []}
    methods = METHODS if space_name == "nb201_cell" else MACRO_METHODS
    for label, strategy, how in [m for m in methods if not only or any(o in m[0] for o in only)]:
        sampler, _, keys = how.partition(":")
        for seed in seeds:
            ws = {**(settings or {}), "sampler": sampler}
            res = ws_search(space_name, {}, strategy, seed, ws, by_shape=keys == "shape")
            search = res["search"]
            space = search.space
            scores = []
            with torch.no_grad():
                for r in rows:
                    model = search.weights.model(space.decode(tuple(r["tokens"])))
                    measured = plain_metrics(space.name, search.network.measure_split(model, search.device))
                    scores.append(search.ws.scored(space.name, measured)["reward"])  # as the search scores
            derived = res["derived"]
            spec = space.decode(derived.tokens)
            again = retrain(space, spec, RETRAIN_SEEDS)
            better = sum(t > again["test_acc"] for t in sorted_test)
            run = {
                "method": label,
                "seed": seed,
                "scores": scores,
                "tau_val": kendalltau(scores, val).statistic,
                "tau_test": kendalltau(scores, test).statistic,
                "search_cpu_s": res["cpu_s"],
                "search_wall_s": res["wall_s"],
                "derived": space.describe(spec),
                "derived_test_acc": again["test_acc"],
                "derived_rank": better + 1,
                "derived_top_pct": 100.0 * (better + 1) / len(rows),
                "parameter_free": derived.metrics["info"].get("parameter_free"),
                "final_shared_loss": res["epochs"][-1]["train_loss"],
            }
            out["runs"].append(run)
            print(run)
    out["best_of_sample_test_acc"] = sorted_test[0]
    if full:
        started, cpu = time.perf_counter(), time.process_time()
        config = SearchConfig(space=space_name, strategy="reinforce", children=100, seed=seeds[0], executor="local")
        store, run_id = run_search(config)
        cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - started  # the search, not the retraining
        best = store.top_children(run_id, 1)[0]
        space_obj = load_space(space_name, {})
        spec = Spec.from_json(best.spec)
        again = retrain(space_obj, spec, RETRAIN_SEEDS)
        out["full_search"] = {
            "children": 100,
            "cpu_s": cpu_s,
            "wall_s": wall_s,
            "best": space_obj.describe(spec),
            "best_test_acc": again["test_acc"],
            "best_rank": sum(t > again["test_acc"] for t in sorted_test) + 1,
        }
        print(out["full_search"])
    table = [
        [
            r["method"],
            r["seed"],
            f"{r['tau_val']:.3f}",
            f"{r['tau_test']:.3f}",
            f"{r['derived_test_acc']:.4f}",
            f"{r['derived_rank']}/{len(rows)}",
            "-" if r["parameter_free"] is None else f"{r['parameter_free']:.2f}",
            f"{r['final_shared_loss']:.3f}",
            f"{r['search_cpu_s']:.0f}",
        ]
        for r in out["runs"]
    ]
    header = ["method", "seed", "tau (val)", "tau (test)", "derived test acc", "rank", "param-free", "shared loss"]
    header.append("search CPU s")
    print_table(header, table)
    print(f"ground-truth ceiling tau (split-half): {ceiling:.3f}; best of sample test acc {sorted_test[0]:.4f}")
    return out


def _matched_hidden(kind: str, params: float, embed: int, n_vocab: int) -> int:
    """The hidden size of an ``kind`` language model with the parameter count nearest ``params``."""
    from l2l.nas.charlm import CharLM, TorchRNN

    def count(h: int) -> int:
        return sum(p.numel() for p in CharLM(n_vocab, embed, TorchRNN(kind, embed, h)).parameters())

    return min(range(16, 1024), key=lambda h: abs(count(h) - params))


def enas_spec(space: Any, description: str) -> Spec:
    """The `rnn_cell` spec an ENAS cell's description names (``n0=tanh(x,h) n1=sigmoid(n0) ...``), to
    retrain a cell an earlier result derived."""
    values: dict[str, Any] = {}
    for j, part in enumerate(description.split()):
        name, _, call = part.partition("=")
        act, _, arg = call.partition("(")
        if name != f"n{j}":
            raise ValueError(f"not an ENAS cell description: {description!r}")
        values[f"n{j}_act"] = act
        if j:
            values[f"n{j}_prev"] = int(arg.rstrip(")").removeprefix("n"))
    return Spec("rnn_cell", tuple((d.name, values[d.name]) for d in space.decisions()))


def tuned_cell(spec: Spec) -> dict[str, Any]:
    """Retrain a derived cell the way the baselines are trained: its best learning rate of `LM_LRS` by
    validation at seed 0, then seeds 0-2 at that rate."""
    by_lr = {lr: load_space("rnn_cell", {"lr": lr}).evaluate(spec, Context(seed=0)) for lr in LM_LRS}
    ok = {lr: r for lr, r in by_lr.items() if r.ok}
    lr = min(ok, key=lambda k: float(ok[k].info["val_bpc"]))
    space = load_space("rnn_cell", {"lr": lr})
    cell = [ok[lr]] + [space.evaluate(spec, Context(seed=s)) for s in (1, 2)]
    return {
        "lr": lr,
        "val_bpc_by_lr": {str(k): float(r.info["val_bpc"]) for k, r in ok.items()},
        "test_bpc": statistics.fmean(float(r.test["test_bpc"]) for r in cell if r.ok),
        "val_bpc": statistics.fmean(float(r.info["val_bpc"]) for r in cell if r.ok),
        "test_bpc_by_seed": [float(r.test["test_bpc"]) for r in cell if r.ok],
    }


def lm(seeds: list[int], reuse: bool, cells_from: list[str]) -> dict[str, Any]:
    """Weight-sharing searches on `rnn_cell` (or, with ``cells_from``, the cells earlier results derived),
    each derived cell retrained at its tuned learning rate, against LSTM and GRU at the same parameter count."""
    from benchmarks.rnn_cell import baseline
    from l2l.nas.charlm import load_corpus

    space: Any = load_space("rnn_cell", {})
    ws = {"steps": 200, "batch_size": 32, "val_batch": 64, "derive": 50}
    out: dict[str, Any] = {"settings": ws, "runs": [], "lrs": list(LM_LRS)}
    found: list[dict[str, Any]] = []
    for path in cells_from:  # cells derived before, with their search's figures
        found += json.loads((RESULTS / path).read_text())["runs"]
    for seed in [] if cells_from else seeds:
        res = ws_search("rnn_cell", {}, "reinforce", seed, ws)
        spec = space.decode(res["derived"].tokens)
        found.append(
            {
                "seed": seed,
                "search_wall_s": res["wall_s"],
                "search_cpu_s": res["cpu_s"],
                "derived": space.describe(spec),
            }
        )
    for run in found:
        spec = enas_spec(space, run["derived"])
        params = float(sum(p.numel() for p in space.build(spec, 0).parameters()))
        keep = ("seed", "search_wall_s", "search_cpu_s", "derived")
        out["runs"].append({**{k: run[k] for k in keep if k in run}, "params": params, **tuned_cell(spec)})
        print(out["runs"][-1], flush=True)
    params = out["runs"][0]["params"]
    corpus = load_corpus()
    earlier = RESULTS / "weight_sharing_lm.json"
    kept = json.loads(earlier.read_text()) if reuse and earlier.exists() else {}
    for kind in ("lstm", "gru"):
        if kept.get(kind) and abs(kept[kind]["params"] - params) < 0.01 * params:  # matched to the same count
            out[kind] = kept[kind]
            continue
        hidden = _matched_hidden(kind, params, space.embed, corpus.n_vocab)
        matched = load_space("rnn_cell", {"hidden": hidden})
        lr = min(LM_LRS, key=lambda lr_: baseline(kind, lr_, 0, matched)[0])
        runs = [baseline(kind, lr, s, matched) for s in (0, 1, 2)]
        out[kind] = {
            "hidden": hidden,
            "lr": lr,
            "params": runs[0][2],
            "val_bpc": statistics.fmean(r[0] for r in runs),
            "test_bpc": statistics.fmean(r[1] for r in runs),
        }
        print(kind, out[kind])
    table = [
        [
            f"derived cell (search seed {r['seed']}, lr {r['lr']})",
            f"{r['params']:.0f}",
            f"{r['test_bpc']:.4f}",
            f"{r['search_wall_s']:.0f}",
        ]
        for r in out["runs"]
    ]
    table += [
        [
            f"{k.upper()} (hidden {out[k]['hidden']}, lr {out[k]['lr']})",
            f"{out[k]['params']:.0f}",
            f"{out[k]['test_bpc']:.4f}",
            "-",
        ]
        for k in ("lstm", "gru")
    ]
    print_table(["model", "params", "test bpc (3 seeds)", "search wall s"], table)
    return out


def micro() -> dict[str, Any]:
    options = {"dataset": "digits"}
    res = ws_search("micro", options, "reinforce", 1, {"epochs": 10})
    space = load_space("micro", options)
    spec = space.decode(res["derived"].tokens)
    again = retrain(space, spec, RETRAIN_SEEDS)
    out = {"search_wall_s": res["wall_s"], "derived": space.describe(spec), **again}
    out["parameter_free"] = res["derived"].metrics["info"].get("parameter_free")
    print(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["ranking", "lm", "micro", "report"])
    parser.add_argument(
        "--space", choices=["nb201_cell", "macro"], default="nb201_cell", help="ranking, report: the space measured"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--full", action="store_true", help="also run a full-training REINFORCE search (ranking)")
    parser.add_argument("--tag", default="", help="suffix of the result file (ranking, report)")
    parser.add_argument(
        "--methods", nargs="+", default=[], metavar="TEXT", help="ranking: only the methods whose label holds one"
    )
    parser.add_argument(
        "-W", dest="ws", action="append", default=[], metavar="KEY=VALUE", help="ranking: a -W setting of every search"
    )
    parser.add_argument(
        "--reuse-baselines", action="store_true", help="lm: keep the LSTM and GRU of the last result when matched"
    )
    parser.add_argument(
        "--cells-from",
        nargs="+",
        default=[],
        metavar="FILE",
        help="lm: retrain the cells these results (under benchmarks/results) derived instead of searching again",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part == "report":  # taus of the written ranking against the current ground truth
        report(str(RESULTS / f"weight_sharing_{_ranking_name(args.space)}{args.tag}.json"), args.space)
        return
    if args.part == "ranking":
        settings = {k: json.loads(v) for k, _, v in (w.partition("=") for w in args.ws)}
        payload = ranking(args.seeds, args.full, args.space, settings, tuple(args.methods))
    elif args.part == "lm":
        payload = lm(args.seeds, args.reuse_baselines, args.cells_from)
    else:
        payload = micro()
    part = _ranking_name(args.space) if args.part == "ranking" else args.part
    print(f"wrote {write_json(f'weight_sharing_{part}{args.tag}', payload)}")


def _ranking_name(space: str) -> str:
    """The ranking result's name: ``ranking`` for `nb201_cell` (as first written), ``ranking_<space>`` else."""
    return "ranking" if space == "nb201_cell" else f"ranking_{space}"


if __name__ == "__main__":
    main()
