"""`nb201`: the NAS-Bench-201 cell space evaluated by lookup in the published table (no training)."""

from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Sequence
from functools import lru_cache
from importlib.resources import files
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SearchSpace, SpaceError, Spec

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# edge i -> j of the 4-node cell, in the order of the official architecture string
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
DATASETS = {"cifar10": "c10", "cifar100": "c100", "imagenet16-120": "in16"}
IMAGES = {"cifar10": (32, 10), "cifar100": (32, 100), "imagenet16-120": (16, 120)}  # image side, classes
CHANNELS, CELLS = 16, 5  # the benchmark network's first stage's channels and cells per stage


def network_cost(ops: Sequence[str], dataset: str) -> dict[str, float]:
    """Parameters and multiply-adds of one forward pass of the benchmark's network around the cell ``ops``, counted
    layer by layer as `l2l.nas.cost` counts the same network built (`l2l.nas.cells.build_cell_network` at 16
    channels and 5 cells per stage): a 3x3 stem and batch norm; three stages of 5 cells at 16, 32 and 64 channels
    joined by residual blocks of stride 2; batch norm, global pooling and a linear classifier. A
    ``nor_conv_kxk`` edge is a k x k convolution and a batch norm; the other ops hold no weights and do no
    multiply-adds of a convolution."""
    side, classes = IMAGES[dataset]
    kernels = [int(op[-1]) for op in ops if op.startswith("nor_conv_")]
    params, macs = 27 * CHANNELS + 2 * CHANNELS, 27 * CHANNELS * side * side  # the stem: conv 3x3 from RGB, BN
    for stage in range(3):
        c, area = CHANNELS * 2**stage, (side // 2**stage) ** 2
        if stage:  # the residual block into this stage: two 3x3 convolutions with BN, and a 1x1 shortcut
            half = c // 2
            params += 9 * half * c + 9 * c * c + 4 * c + half * c
            macs += (9 * half * c + 9 * c * c + half * c) * area
        params += CELLS * sum(k * k * c * c + 2 * c for k in kernels)
        macs += CELLS * sum(k * k * c * c for k in kernels) * area
    last = 4 * CHANNELS
    params += 2 * last + last * classes + classes  # the last BN and the classifier
    macs += last * classes
    return {"params": float(params), "flops": float(macs)}


def arch_str(ops: Sequence[str]) -> str:
    """The official NAS-Bench-201 string of a cell given the op on each of the six edges."""
    nodes: list[list[str]] = [[], [], []]
    for (dst, src), op in zip(EDGES, ops, strict=True):
        nodes[dst - 1].append(f"{op}~{src}")
    return "+".join("|" + "|".join(n) + "|" for n in nodes)


@lru_cache(maxsize=1)
def load_table() -> dict[str, dict[str, float]]:
    """Architecture string -> metrics (percent), read once from the copy shipped in the package."""
    text = files("l2l.search_spaces").joinpath("data/nb201.csv").read_text()
    table: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(text.splitlines()):
        table[row["arch_str"]] = {k: float(v) for k, v in row.items() if k != "arch_str"}
    return table


def unique_str(ops: Sequence[str]) -> str:
    """NAS-Bench-201's own identity of a cell's computation: each node is the sorted sum of its inputs, a
    skip connection passes its input's string on, and a "none" edge or an input that is zero adds a zero
    term ("#"). Cells with one string compute the same function (6,466 of the 15,625 cells differ)."""
    nodes = {0: "0"}
    for node in (1, 2, 3):
        terms = []
        for (dst, src), op in zip(EDGES, ops, strict=True):
            if dst != node:
                continue
            if op == "none" or nodes[src] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[src])
            else:
                terms.append(f"({nodes[src]})@{op}")
        nodes[node] = "+".join(sorted(terms))
    return nodes[3]


@lru_cache(maxsize=1)
def canonical_cells() -> dict[str, tuple[int, ...]]:
    """Each distinct computation's canonical cell: the smallest token sequence with its `unique_str`."""
    out: dict[str, tuple[int, ...]] = {}
    for tokens in itertools.product(range(len(OPS)), repeat=len(EDGES)):
        out.setdefault(unique_str([OPS[t] for t in tokens]), tokens)
    return out


class CellSpace(SearchSpace):
    """The NAS-Bench-201 cell decisions (one op per edge) and how a chosen cell reads and draws."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._decisions = [Decision.categorical(f"edge_{dst}{src}", OPS) for dst, src in EDGES]

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def ops(self, spec: Spec) -> list[str]:
        """The op on each edge, in the order of the official architecture string."""
        return [str(spec[d.name]) for d in self._decisions]

    def describe(self, spec: Spec) -> str:
        return arch_str(self.ops(spec))

    def graph(self, spec: Spec) -> dict[str, Any]:
        edges = [[src, dst, op] for (dst, src), op in zip(EDGES, self.ops(spec), strict=True) if op != "none"]
        return {"nodes": ["node 0 (input)", "node 1", "node 2", "node 3 (output)"], "edges": edges}


class NB201Space(CellSpace):
    """Six edges, five ops each (15,625 cells). Reward = 12-epoch validation accuracy (as a fraction);
    reported test = 200-epoch test accuracy, the number papers compare.

    Option ``dataset``: cifar10 (default), cifar100 or imagenet16-120. Option ``canonical``: search the
    6,466 distinct computations (NAS-Bench-201's `unique_str`), each proposed as one canonical cell, instead
    of all 15,625 cells. Option ``noise``: the sd, in percentage points, of Gaussian noise added to the
    validation reward, drawn from the child's seed (a real search's rewards are noisy; the table holds
    means); the test accuracies stay the table's. Without noise the rewards are exact.
    """

    name = "nb201"
    description = "NAS-Bench-201 cells by table lookup: 12-epoch validation reward, 200-epoch test reported."
    test_metrics = ("test_acc", "test_acc_12ep")
    cost_metrics = ("params", "flops")  # of the benchmark's network, counted from its layers (`network_cost`)

    def __init__(self, dataset: str = "cifar10", canonical: bool = False, noise: float = 0.0) -> None:
        if dataset not in DATASETS:
            raise SpaceError(f"unknown nb201 dataset {dataset!r}; known: {', '.join(DATASETS)}")
        if not isinstance(canonical, bool):
            raise SpaceError(f"nb201 option canonical must be true or false, got {canonical!r}")
        if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0.0 <= noise < 100.0:
            raise SpaceError(f"nb201 option noise is an sd in percentage points in [0, 100), got {noise!r}")
        extra = {"canonical": True} if canonical else {}
        super().__init__(dataset=dataset, **extra, **({"noise": float(noise)} if noise else {}))
        self.prefix, self.dataset = DATASETS[dataset], dataset
        self.canonical_form = canonical
        self.noise = float(noise)

    def exact_rewards(self) -> bool:
        return self.noise == 0.0

    def canonical(self, spec: Spec) -> Spec | None:
        if not self.canonical_form:
            return None
        return self.decode(canonical_cells()[unique_str(self.ops(spec))])

    def lookup(self, spec: Spec) -> dict[str, float]:
        """The table's row for a spec."""
        key = self.describe(spec)
        row = load_table().get(key)
        if row is None:
            raise SpaceError(f"architecture {key} is not in the NAS-Bench-201 table")
        return row

    def optimum(self) -> tuple[int, ...]:
        table = load_table()
        if self.canonical_form:  # the best of the canonical cells, the only ones proposed
            cells = canonical_cells().values()
            return max(cells, key=lambda t: table[arch_str([OPS[i] for i in t])][f"{self.prefix}_val_12ep"])
        best = max(table.items(), key=lambda kv: kv[1][f"{self.prefix}_val_12ep"])[0]
        ops = [part.split("~")[0] for node in best.split("+") for part in node.strip("|").split("|")]
        return tuple(OPS.index(op) for op in ops)

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        row = self.lookup(spec)
        p = self.prefix
        val = row[f"{p}_val_12ep"] / 100.0
        if self.noise:
            val += random.Random(ctx.seed).gauss(0.0, self.noise) / 100.0
        return Result(
            reward=val,
            val_acc=val,
            test={"test_acc_12ep": row[f"{p}_test_12ep"] / 100.0, "test_acc": row[f"{p}_test_200ep"] / 100.0},
            cost=network_cost(self.ops(spec), self.dataset),
            info={"index": int(row["index"])},
        )
