"""What assembling architectures from modules built before saves a weight-sharing search.

`python -m benchmarks.ws_builds --seeds 4 5 6 7 8 9` (`--space micro` for ENAS cells; `nb201_cell` by
default): for each seed, the default weight-sharing search of the space twice in
this process, once as l2l runs it (the space's `sharing_builder` assembles an architecture whose ops were all
built before) and once with every sampled architecture built in full (`SharedNetwork.sharing_builder`, the
default of a space that offers no builder: what the search did before), the order alternating from seed to
seed. Reports each search's CPU seconds (the search alone: `WeightSharingSearch.run`) and whether the two
recorded the same children, rewards and epoch losses (they must: the builder changes the cost, not the result).
One thread; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from benchmarks.common import print_table, write_json
from benchmarks.weight_sharing import ws_search
from l2l.search_spaces.sharing import ClassifierNetwork, SharedNetwork


def one(space: str, seed: int, in_full: bool) -> dict[str, Any]:
    """One default weight-sharing search of ``space``; what it cost and what it recorded."""
    assembling = ClassifierNetwork.sharing_builder
    if in_full:
        ClassifierNetwork.sharing_builder = SharedNetwork.sharing_builder  # type: ignore[method-assign]
    try:
        res = ws_search(space, {}, "reinforce", seed, {})
    finally:
        ClassifierNetwork.sharing_builder = assembling  # type: ignore[method-assign]
    search = res["search"]
    children = [(c.number, c.status, c.tokens, c.reward) for c in search.store.children(search.run_id)]
    return {"cpu_s": res["cpu_s"], "record": (children, [e["train_loss"] for e in res["epochs"]])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[4, 5, 6])
    parser.add_argument("--space", choices=["nb201_cell", "micro"], default="nb201_cell")
    parser.add_argument("--name", help="result file under benchmarks/results (ws_builds, ws_builds_micro)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for i, seed in enumerate(args.seeds):
        order = (False, True) if i % 2 == 0 else (True, False)
        runs = {in_full: one(args.space, seed, in_full) for in_full in order}
        rows.append(
            {
                "seed": seed,
                "assembled_cpu_s": runs[False]["cpu_s"],
                "in_full_cpu_s": runs[True]["cpu_s"],
                "same_record": runs[False]["record"] == runs[True]["record"],
            }
        )
        print(rows[-1], flush=True)
    ratios = [r["assembled_cpu_s"] / r["in_full_cpu_s"] for r in rows]
    table = [
        [r["seed"], f"{r['assembled_cpu_s']:.1f}", f"{r['in_full_cpu_s']:.1f}", f"{q:.2f}", r["same_record"]]
        for r, q in zip(rows, ratios, strict=True)
    ]
    print_table(["seed", "assembled CPU s", "built in full CPU s", "ratio", "same record"], table)
    print(f"median ratio {statistics.median(ratios):.2f}")
    name = args.name or ("ws_builds" if args.space == "nb201_cell" else f"ws_builds_{args.space}")
    print(f"wrote {write_json(name, {'runs': rows, 'median_ratio': statistics.median(ratios)})}")


if __name__ == "__main__":
    main()
