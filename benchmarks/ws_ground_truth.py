"""Ground truth for the weight-sharing benchmark: randomly drawn architectures trained stand-alone.

Each architecture is trained with the space's own budget (`nb201_cell`: MNIST-1D, 5 epochs, 8 channels,
1 cell per stage; `macro`: MNIST-1D, 6 layers, 8 epochs) under several seeds; its stand-alone accuracy is
the mean over seeds (validation and test). `nb201_cell` cells are drawn uniformly among the 6,466
distinct topologies (NAS-Bench-201's canonical cells), `macro` architectures uniformly over its
decisions, so no two rows are the same network. Written to
``benchmarks/results/<space>_ground_truth.json``; reproducible from the arguments.

python -m benchmarks.ws_ground_truth [--space nb201_cell] [--cells 120] [--seeds 2] [--draw-seed 7]
python -m benchmarks.ws_ground_truth --extend 3     # three more training seeds for every cell
python -m benchmarks.ws_ground_truth --extend 3 --part 0 & python -m benchmarks.ws_ground_truth --extend 3 --part 1
python -m benchmarks.ws_ground_truth --merge-parts  # the same six seeds, on two cores
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

import torch

from benchmarks.common import RESULTS, write_json
from l2l.search_spaces import Context, load_space

SPACES = ("nb201_cell", "macro")


def name_of(space: str) -> str:
    return f"{space}_ground_truth"


def draw_cells(n: int, seed: int, space: str = "nb201_cell") -> list[tuple[int, ...]]:
    """``n`` distinct architectures drawn uniformly with ``seed``: canonical cells of NAS-Bench-201 for
    `nb201_cell`, token sequences for another space."""
    if space == "nb201_cell":
        from l2l.search_spaces.nb201 import canonical_cells

        return random.Random(seed).sample(sorted(canonical_cells().values()), n)
    from l2l.testing.spaces import random_tokens

    searched = load_space(space, {})
    rng, drawn = random.Random(seed), dict[tuple[int, ...], None]()
    while len(drawn) < n:
        drawn[random_tokens(searched, rng)] = None
    return list(drawn)


def load_ground_truth(space: str = "nb201_cell") -> dict[str, Any]:
    path = RESULTS / f"{name_of(space)}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run python -m benchmarks.ws_ground_truth --space {space} first")
    return dict(json.loads(path.read_text()))


def train(space: Any, tokens: tuple[int, ...], seeds: range) -> tuple[list[float], list[float], float]:
    """Validation and test accuracies of one cell trained stand-alone under each of ``seeds``, and the time."""
    spec = space.decode(tokens)
    vals, tests, started = [], [], time.perf_counter()
    for seed in seeds:
        result = space.evaluate(spec, Context(seed=seed))
        vals.append(result.val_acc if result.ok and result.val_acc is not None else 0.0)
        tests.append(float(result.test.get("test_acc", 0.0)) if result.ok else 0.0)
    return vals, tests, time.perf_counter() - started


def extend(space: Any, name: str, n: int, part: int | None) -> None:
    """Train every row under ``n`` more seeds: into the ground truth, or into part file ``part``."""
    payload = load_ground_truth(name)
    first = payload["seeds"] + (part or 0) * n
    started = time.perf_counter()
    rows = payload["rows"]
    for i, row in enumerate(rows):
        vals, tests, seconds = train(space, tuple(row["tokens"]), range(first, first + n))
        row["val_accs"] += vals
        row["test_accs"] += tests
        row["val_acc"], row["test_acc"] = statistics.fmean(row["val_accs"]), statistics.fmean(row["test_accs"])
        row["train_s"] += seconds
        if part is not None:
            row["part"] = {"val_accs": vals, "test_accs": tests, "train_s": seconds}
        print(f"{i + 1}/{len(rows)} val {row['val_acc']:.4f} test {row['test_acc']:.4f} {row['arch']}")
    if part is not None:
        out = {"first_seed": first, "seeds": n, "rows": [{"tokens": r["tokens"], **r["part"]} for r in rows]}
        print(f"wrote {write_json(f'{name_of(name)}_part{part}', out)}")
        return
    payload["seeds"] = first + n
    payload["cpu_seconds"] += time.perf_counter() - started
    print(f"wrote {write_json(name_of(name), payload)}")


def merge_parts(name: str) -> None:
    """Append the seeds of ``<name>_ground_truth_part<K>.json`` (K = 0, 1, ...) to the ground truth."""
    payload = load_ground_truth(name)
    part = 0
    while (path := RESULTS / f"{name_of(name)}_part{part}.json").exists():
        data = json.loads(path.read_text())
        if data["first_seed"] != payload["seeds"]:
            raise SystemExit(
                f"{path.name} starts at seed {data['first_seed']}, the truth has seeds 0..{payload['seeds'] - 1}"
            )
        for row, new in zip(payload["rows"], data["rows"], strict=True):
            if row["tokens"] != new["tokens"]:
                raise SystemExit(f"{path.name} holds other architectures than the ground truth")
            row["val_accs"] += new["val_accs"]
            row["test_accs"] += new["test_accs"]
            row["val_acc"], row["test_acc"] = statistics.fmean(row["val_accs"]), statistics.fmean(row["test_accs"])
            row["train_s"] += new["train_s"]
            payload["cpu_seconds"] += new["train_s"]
        payload["seeds"] += data["seeds"]
        print(f"merged {path.name}: seeds {data['first_seed']}..{payload['seeds'] - 1}")
        part += 1
    print(f"wrote {write_json(name_of(name), payload)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", choices=SPACES, default="nb201_cell")
    parser.add_argument("--cells", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--draw-seed", type=int, default=7)
    parser.add_argument("--extend", type=int, default=0, help="add this many seeds to the written ground truth")
    parser.add_argument(
        "--part",
        type=int,
        default=None,
        help="with --extend N: train the N seeds after part K's predecessors (seeds S+K*N..), written to "
        "<space>_ground_truth_part<K>.json for --merge-parts (parts run side by side)",
    )
    parser.add_argument("--merge-parts", action="store_true", help="append the written parts' seeds, in part order")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = load_space(args.space, {})
    if args.merge_parts:
        merge_parts(args.space)
        return
    if args.extend:
        extend(space, args.space, args.extend, args.part)
        return
    rows = []
    started = time.perf_counter()
    for i, tokens in enumerate(draw_cells(args.cells, args.draw_seed, args.space)):
        vals, tests, seconds = train(space, tokens, range(args.seeds))
        rows.append(
            {
                "tokens": list(tokens),
                "arch": space.describe(space.decode(tokens)),
                "val_acc": statistics.fmean(vals),
                "test_acc": statistics.fmean(tests),
                "val_accs": vals,
                "test_accs": tests,
                "train_s": seconds,
            }
        )
        print(f"{i + 1}/{args.cells} val {rows[-1]['val_acc']:.4f} test {rows[-1]['test_acc']:.4f} {rows[-1]['arch']}")
    payload = {
        "space": args.space,
        "space_options": {},
        "cells": args.cells,
        "seeds": args.seeds,
        "draw_seed": args.draw_seed,
        "cpu_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    print(f"wrote {write_json(name_of(args.space), payload)} in {payload['cpu_seconds']:.0f} s")


if __name__ == "__main__":
    main()
