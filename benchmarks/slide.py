"""SLIDE's LSH-sparse output layer where it is meant to pay: many classes. Against the dense layer and
sampled softmax (uniform and unigram negatives, logQ-corrected) at the same number of active neurons.

Two tasks, every output layer trained side by side, epochs interleaved (epoch 1 of every variant, then
epoch 2, ...) so the shared machine's load falls on all alike; wall time and this process's CPU time per
epoch (the steadier one on a shared machine) are medians over epochs and seeds:

- ``xc``: the generated extreme-classification task (`l2l.nas.extreme`: 100,000 Zipf-distributed labels),
  fastText-style bag-of-features model, metric top-1 accuracy over the full layer.
- ``lm``: word-level LSTM language model of the packaged Shakespeare (`l2l.nas.wordlm`, 11,920 words),
  metric per-word perplexity under the full softmax.

Multiply-adds of the output layer per training example are counted as computed: active products,
query hashing and table rebuilds (amortized). Optimizer: Adam on dense gradients, lazy Adam (`RowAdam`,
SparseAdam's arithmetic: only the rows with a gradient) on sparse ones, for every variant; the input
embeddings are sparse in all.
Settings are fixed before looking at the test split; validation is reported beside it.

``--tasks threads``: the extreme task's output layer alone, one training step at 1 and 2 threads.

python -m benchmarks.slide [--epochs 1] [--xc-train 10000] [--lm-max-steps 100] [--seeds 0] [--threads 1]
    [--tasks xc,lm,threads] [--fractions 0.01,0.05,0.2] [--kinds slide,slide_tail,...] [--predicted 0.25]
    [--curves] [--name slide] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import RESULTS, print_table, write_json
from l2l.nas import extreme, wordlm
from l2l.nas.slide import OUTPUT_LAYERS, OutputLayer, SlideOutput, SparseDenseAdam, output_layer

FRACTIONS = (0.01, 0.05, 0.2)
KINDS = ("slide", "slide_tail", "sampled_uniform", "sampled_unigram")


def variants(
    fractions: tuple[float, ...], predicted: tuple[float, ...] = (), kinds: tuple[str, ...] = KINDS
) -> list[tuple[str, str, float]]:
    """(name, output layer kind, active fraction): dense, then each of ``kinds`` at each fraction, then
    Denil's predicted output layer at each learned share of ``predicted``."""
    out = [("dense", "dense", 1.0)]
    out += [(f"{kind} {a:.0%}", kind, a) for a in fractions for kind in kinds]
    out += [(f"predicted {a:.0%} learned", "predicted", a) for a in predicted]
    return out


def layer_facts(layer: OutputLayer) -> dict[str, Any]:
    """What an output layer did in training: multiply-adds per example and its tables' rebuilds."""
    facts: dict[str, Any] = {"macs_per_example": layer.macs_per_example(), "examples": layer.examples}
    if isinstance(layer, SlideOutput):
        facts.update(rebuilds=layer.rebuilds, rebuild_s=layer.rebuild_seconds, tables=layer.tables, bits=layer.bits)
    return facts


def measured(model: Any, name: str, times: dict[str, list[float]]) -> dict[str, Any]:
    """A variant's seconds per epoch (wall and CPU), its validation metric after each epoch (when
    ``--curves``) and what its output layer did."""
    curve = {"val_curve": times[f"{name} val"]} if f"{name} val" in times else {}
    return {"epoch_s": times[name], "epoch_cpu_s": times[f"{name} cpu"], **curve, **layer_facts(model.output)}


def train_variants(
    task: str,
    args: argparse.Namespace,
    seed: int,
    build: Callable[[str, float], Any],
    train: Callable[[Any, SparseDenseAdam, int], float],
    lr: float,
    validate: Callable[[Any], float],
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Every variant's model (``build(kind, active)``, from the same seed), trained epoch by epoch, the
    variants interleaved in each epoch; the models and each one's seconds per epoch (and, with
    ``--curves``, its validation metric after each epoch, outside the timing)."""
    models: dict[str, tuple[Any, SparseDenseAdam]] = {}
    for name, kind, active in variants(args.fractions, args.predicted, args.kinds):
        torch.manual_seed(seed)
        model = build(kind, active)
        models[name] = (model, SparseDenseAdam(model, lr))
    times: dict[str, list[float]] = {name: [] for name in models}
    for epoch in range(args.epochs):
        for name, (model, opt) in models.items():
            torch.manual_seed(seed * 1000 + epoch)
            cpu = time.process_time()
            times[name].append(train(model, opt, seed * 1000 + epoch))
            times[f"{name} cpu"] = [*times.get(f"{name} cpu", []), time.process_time() - cpu]
            if args.curves:
                times[f"{name} val"] = [*times.get(f"{name} val", []), validate(model)]
                print(f"{task} epoch {epoch + 1} {name}: validation {times[f'{name} val'][-1]:.4f}", flush=True)
            print(
                f"{task} epoch {epoch + 1} {name}: {times[name][-1]:.1f}s, {times[f'{name} cpu'][-1]:.1f} cpu s",
                flush=True,
            )
    return {name: model for name, (model, _) in models.items()}, times


def run_xc(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """Every variant on the extreme-classification task, epochs interleaved."""
    task = extreme.make_extreme(n_train=args.xc_train, seed=0)
    counts = task.label_counts()
    models, times = train_variants(
        "xc",
        args,
        seed,
        lambda kind, active: extreme.BagClassifier(
            task.n_features, args.xc_dim, output_layer(kind, args.xc_dim, task.n_labels, active, counts, seed)
        ),
        lambda model, opt, order_seed: extreme.train_epoch(model, task, opt, args.xc_batch, order_seed),
        args.xc_lr,
        lambda model: extreme.accuracy(model, task.val),
    )
    return {
        name: {
            "val_acc": extreme.accuracy(model, task.val),
            "test_acc": extreme.accuracy(model, task.test),
            **measured(model, name, times),
        }
        for name, model in models.items()
    }


def run_lm(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """Every variant on the word language model, epochs interleaved."""
    corpus = wordlm.load_words()
    counts = corpus.counts()
    config = wordlm.WordLMConfig(lr=args.lm_lr, max_steps=args.lm_max_steps)
    models, times = train_variants(
        "lm",
        args,
        seed,
        lambda kind, active: wordlm.WordLM(
            corpus.n_vocab,
            args.lm_embed,
            args.lm_hidden,
            output_layer(kind, args.lm_hidden, corpus.n_vocab, active, counts, seed),
        ),
        lambda model, opt, _: wordlm.train_epoch(model, corpus, opt, config),
        args.lm_lr,
        lambda model: wordlm.perplexity(model, corpus.val),
    )
    return {
        name: {
            "val_ppl": wordlm.perplexity(model, corpus.val),
            "test_ppl": wordlm.perplexity(model, corpus.test),
            "body_macs_per_word": model.body_macs(),
            **measured(model, name, times),
        }
        for name, model in models.items()
    }


def run_threads(args: argparse.Namespace, seed: int) -> dict[str, dict[str, Any]]:
    """One training step of the extreme task's output layer alone (batch ``xc_batch``, Adam/RowAdam step
    included) at 1 and 2 intra-op threads, interleaved: median seconds of ``repeats`` steps."""
    task = extreme.make_extreme(n_train=args.xc_train, seed=0)
    torch.manual_seed(seed)
    h, y = torch.randn(args.xc_batch, args.xc_dim), task.train.labels[: args.xc_batch]
    layers = {
        name: output_layer(kind, args.xc_dim, task.n_labels, a, task.label_counts(), seed)
        for name, kind, a in variants((0.01, 0.05))
        if not name.startswith("sampled_uniform")
    }
    times: dict[str, list[float]] = {f"{name} @{t}": [] for name in layers for t in (1, 2)}
    for _ in range(args.repeats):
        for name, layer in layers.items():
            opt = SparseDenseAdam(layer, 1e-3)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                started = time.perf_counter()
                loss = layer.loss(h, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                times[f"{name} @{threads}"].append(time.perf_counter() - started)
    torch.set_num_threads(args.threads)
    return {name: {"step_s": statistics.median(ts), "steps_s": ts} for name, ts in times.items()}


def table(task: str, runs: list[dict[str, dict[str, Any]]]) -> list[list[str]]:
    """Rows: metric (mean over seeds, validation and test), output-layer MACs per example, median epoch seconds."""
    metric = "acc" if task == "xc" else "ppl"
    dense_macs = runs[0]["dense"]["macs_per_example"]
    dense_s = statistics.median(t for r in runs for t in r["dense"]["epoch_s"])
    dense_cpu = statistics.median(t for r in runs for t in r["dense"]["epoch_cpu_s"])
    rows = []
    for name in runs[0]:
        val = statistics.mean(r[name][f"val_{metric}"] for r in runs)
        test = statistics.mean(r[name][f"test_{metric}"] for r in runs)
        macs = statistics.mean(r[name]["macs_per_example"] for r in runs)
        epoch = statistics.median(t for r in runs for t in r[name]["epoch_s"])
        cpu = statistics.median(t for r in runs for t in r[name]["epoch_cpu_s"])
        fmt = "{:.4f}" if metric == "acc" else "{:.1f}"
        rows.append(
            [
                name,
                fmt.format(val),
                fmt.format(test),
                f"{macs:,.0f}",
                f"{dense_macs / macs:.1f}x",
                f"{epoch:.1f}",
                f"{epoch / dense_s:.2f}",
                f"{cpu:.1f}",
                f"{cpu / dense_cpu:.2f}",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--tasks", default="xc,lm")
    parser.add_argument("--xc-train", type=int, default=10_000)
    parser.add_argument("--xc-dim", type=int, default=32)
    parser.add_argument("--xc-batch", type=int, default=128)
    parser.add_argument("--xc-lr", type=float, default=0.01)
    parser.add_argument("--lm-embed", type=int, default=64)
    parser.add_argument("--lm-hidden", type=int, default=64)
    parser.add_argument("--lm-lr", type=float, default=3e-3)
    parser.add_argument("--lm-max-steps", type=int, default=100, help="updates per epoch (0: the whole text, 264)")
    parser.add_argument("--repeats", type=int, default=15, help="steps per setting in the threads check")
    parser.add_argument("--fractions", default=",".join(map(str, FRACTIONS)), help="active fractions, comma-separated")
    parser.add_argument("--kinds", default=",".join(KINDS), help="sparse output layers beside dense, comma-separated")
    parser.add_argument("--predicted", default="", help="learned shares of a predicted output layer (Denil)")
    parser.add_argument("--curves", action="store_true", help="the validation metric after every epoch too")
    parser.add_argument("--name", default="slide", help="results/NAME.json (merged with the tasks already there)")
    parser.add_argument("--quick", action="store_true", help="a smoke check: 1 epoch, small data, 5%% only")
    args = parser.parse_args()
    args.fractions = tuple(float(f) for f in args.fractions.split(","))
    args.predicted = tuple(float(f) for f in args.predicted.split(",") if f)
    args.kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(args.kinds) - set(OUTPUT_LAYERS)
    if unknown:
        parser.error(f"unknown output layer(s) {', '.join(sorted(unknown))}; known: {', '.join(OUTPUT_LAYERS)}")
    if args.quick:
        args.epochs, args.xc_train, args.lm_max_steps, args.fractions = 1, 2_000, 20, (0.05,)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = args.tasks.split(",")
    started = time.perf_counter()
    payload: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items()}, "tasks": {}}
    heads = {"xc": ("val acc", "test acc"), "lm": ("val ppl", "test ppl")}
    for task in tasks:
        if task == "threads":
            payload["tasks"]["threads"] = found = run_threads(args, seeds[0])
            print_table(
                ["output layer @ threads", "step ms (median)"],
                [[k, f"{v['step_s'] * 1e3:.1f}"] for k, v in found.items()],
            )
            continue
        runs = [(run_xc if task == "xc" else run_lm)(args, seed) for seed in seeds]
        payload["tasks"][task] = runs
        print(f"{task}: {args.epochs} epochs, seeds {args.seeds}, {args.threads} thread(s)")
        cols = [
            "output layer",
            *heads[task],
            "MACs / example (train)",
            "fewer MACs",
            "wall s / epoch",
            "vs dense",
            "CPU s / epoch",
            "vs dense",
        ]
        print_table(cols, table(task, runs))
    payload["wall_s"] = time.perf_counter() - started
    if not args.quick:  # tasks run separately (in parallel processes) land in the same file
        path = RESULTS / f"{args.name}.json"
        old = json.loads(path.read_text()) if path.exists() else {"tasks": {}}
        payload["tasks"] = {**old.get("tasks", {}), **payload["tasks"]}
        payload["settings_by_task"] = {**old.get("settings_by_task", {}), **{t: payload["settings"] for t in tasks}}
        print(f"wrote {write_json(args.name, payload)}")


if __name__ == "__main__":
    main()
