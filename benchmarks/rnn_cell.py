"""Recurrent cell search for character language modelling, against LSTM and GRU at the same budget.

1. Baselines: one-layer `nn.LSTM` and `nn.GRU` language models (hidden 128, embedding 32) trained with
   the per-child budget of the `rnn_cell` space (300 Adam steps of 32 streams x 32 characters). Each
   gets its best learning rate of 0.003, 0.01, 0.02 (by validation, seed 0), then runs seeds 0-2.
2. A REINFORCE search over ENAS cells (8 nodes, hidden 128) with that budget per child (Ray executor
   on this machine's CPUs).
3. The best cell (by reward) retrained from its spec with the same budget, seeds 0-2.

python -m benchmarks.rnn_cell [--children 100] [--batch 10] [--strategy reinforce]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch

from benchmarks.common import print_table, write_json
from l2l.nas.charlm import CharLM, LMConfig, TorchRNN, load_corpus, one_char_cost, train_lm
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Context, Spec, load_space

SEEDS = (0, 1, 2)
LRS = (0.003, 0.01, 0.02)


def baseline(kind: str, lr: float, seed: int, space: Any) -> tuple[float, float, float]:
    corpus = load_corpus()
    torch.manual_seed(seed)
    model = CharLM(corpus.n_vocab, space.embed, TorchRNN(kind, space.embed, space.hidden))
    config = LMConfig(steps=space.steps, batch_size=space.batch_size, bptt=space.bptt, lr=lr)
    out = train_lm(model, corpus, config, seed=seed)
    return out.val_bpc, out.test_bpc, one_char_cost(model, torch.device("cpu"))["params"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--strategy", default="reinforce")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    space: Any = load_space("rnn_cell", {})
    rows: list[list[str]] = []
    payload: dict[str, Any] = {"budget": dict(space.options)}
    for kind in ("lstm", "gru"):
        by_lr = {lr: baseline(kind, lr, 0, space)[0] for lr in LRS}
        lr = min(by_lr, key=lambda k: by_lr[k])
        runs = [baseline(kind, lr, s, space) for s in SEEDS]
        val, test = statistics.mean(r[0] for r in runs), statistics.mean(r[1] for r in runs)
        payload[kind] = {"val_bpc_by_lr": by_lr, "lr": lr, "val_bpc": val, "test_bpc": [r[1] for r in runs]}
        rows.append(
            [
                kind,
                f"lr {lr}",
                f"{val:.3f}",
                f"{test:.3f} +- {statistics.stdev(r[1] for r in runs):.3f}",
                f"{int(runs[0][2]):,}",
                "",
            ]
        )
        print(rows[-1], flush=True)

    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-rnn-')}/rnn.db")
    config = SearchConfig(
        space="rnn_cell",
        strategy=args.strategy,
        children=args.children,
        batch=args.batch,
        seed=args.seed,
        executor="ray",
    )
    started = time.perf_counter()
    run_id = Search.start(store, config).run()
    search_s = time.perf_counter() - started
    children = store.children(run_id)
    best = store.top_children(run_id, 1)[0]
    spec = Spec.from_json(best.spec)
    retrained = [space.evaluate(spec, Context(seed=s)) for s in SEEDS]
    tests = [r.test["test_bpc"] for r in retrained]
    vals = [r.info["val_bpc"] for r in retrained]
    payload["search"] = {
        "strategy": args.strategy,
        "children": len(children),
        "failed": sum(c.status == "failed" for c in children),
        "search_seconds": search_s,
        "best_child": best.number,
        "best_val_bpc": (best.metrics.get("info") or {}).get("val_bpc"),
        "cell": space.describe(spec),
        "retrained_val_bpc": vals,
        "retrained_test_bpc": tests,
        "params": retrained[0].cost["params"],
    }
    rows.append(
        [
            f"{args.strategy} cell",
            f"search {search_s / 60:.1f} min",
            f"{statistics.mean(vals):.3f}",
            f"{statistics.mean(tests):.3f} +- {statistics.stdev(tests):.3f}",
            f"{int(retrained[0].cost['params']):,}",
            space.describe(spec),
        ]
    )
    print(f"Shakespeare characters, {space.steps} steps x {space.batch_size} x {space.bptt} chars per model; seeds 0-2")
    print_table(["model", "setting", "val bpc", "test bpc", "params", "cell"], rows)
    print(f"wrote {write_json('rnn_cell', payload)}")


if __name__ == "__main__":
    main()
