"""What the spaces' specs describe, as plain values: the choices the spaces offer as decisions, and the
layers and cells' nodes a spec stands for, apart from the modules that build them. A space's decisions,
canonical form, description and graph need no torch, so reading a run's results (the CLI's read commands,
the dashboard) starts without it. The builders import these from here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

RANK_CHOICES = ("full", "1/2", "1/4", "1/8", "1/16")  # a low-rank layer's rank, as a share of full (nas/lowrank.py)
ACTIVE_CHOICES = ("1.0", "0.2", "0.05")  # fractions of neurons evaluated that the spaces offer (1.0 = dense)
SHARING = ("input", "batch")  # what a hashed layer's active set is chosen for (nas/hashed.py)
PREDICT_CHOICES = ("dense", "1/2", "1/4", "1/10")  # the share of a Denil layer learned (nas/denil.py)

# ENAS's five ops (Pham et al. 2018, section 2.3)
ENAS_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity")
# NASNet's thirteen (Zoph et al. 2018, section 3)
NASNET_OPS = (
    "identity",
    "conv_1x3_3x1",
    "conv_1x7_7x1",
    "dil_conv_3x3",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "conv_1x1",
    "conv_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
)
OP_SETS = {"enas": ENAS_OPS, "nasnet": NASNET_OPS}  # the micro space's op sets (nas/micro.py)

# recurrent cells (nas/rnn_cells.py looks each name up in its table of functions)
RNN_ACTIVATIONS = ("tanh", "relu", "identity", "sigmoid")
RNN_COMBINE = ("add", "mul")
TREE_LEAVES, TREE_NODES = 8, 15  # Zoph & Le's base-8 tree: 8 leaves read x and h, 7 inner nodes combine them
TREE_CHILDREN = {8 + k: (2 * k, 2 * k + 1) for k in range(4)} | {12: (8, 9), 13: (10, 11), 14: (12, 13)}


def fraction(choice: object, unknown: str, what: str) -> Fraction:
    """``choice`` as a fraction in (0, 1]; ``unknown`` is the error when it is none, ``what`` names it."""
    try:
        frac = Fraction(str(choice))
    except (ValueError, ZeroDivisionError) as exc:  # "1/0" too
        raise ValueError(unknown) from exc
    if not 0 < frac <= 1:
        raise ValueError(f"{what} must be in (0, 1], got {choice!r}")
    return frac


def resolve_rank(choice: str | int | None, n_in: int, n_out: int) -> int | None:
    """The rank a choice means for an ``n_in`` -> ``n_out`` layer: None for full rank, else at least 1."""
    if choice is None or choice == "full":
        return None
    if isinstance(choice, int) or str(choice).isdigit():
        r = int(choice)
    else:
        unknown = f"unknown rank {choice!r}; use 'full', an integer, or a fraction like '1/4'"
        frac = fraction(choice, unknown, "a rank fraction")
        r = max(1, int(frac * min(n_in, n_out)))
    if r < 1:
        raise ValueError(f"a rank must be at least 1, got {choice!r}")
    return None if r >= min(n_in, n_out) else r


def same_rank(choice: str, n_in: int, n_out: int) -> str:
    """The first of `RANK_CHOICES` that builds an ``n_in`` -> ``n_out`` layer of the same rank as ``choice`` (ranks
    are clamped to [1, full], so several choices can build one layer): a canonical form's choice."""
    rank = resolve_rank(choice, n_in, n_out)
    return next((c for c in RANK_CHOICES if resolve_rank(c, n_in, n_out) == rank), choice)


# the shape of one example of each built-in dataset (`l2l.nas.data`), known without loading it
INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "digits": (64,),
    "mnist1d": (40,),
    "synthetic": (40,),
    "cifar10": (3, 32, 32),
}


def signal_shape(input_shape: tuple[int, ...], dataset: str) -> tuple[int, ...]:
    """How a dataset's examples enter a convolutional network: digits are 8x8 images, MNIST-1D a 1x40 signal."""
    if len(input_shape) == 3:
        return input_shape
    n = math.prod(input_shape)
    side = math.isqrt(n)
    if dataset == "digits" and side * side == n:
        return (1, side, side)
    return (1, n)


def learned_points(choice: str | None, n: int) -> int | None:
    """How many of ``n`` coordinates a choice learns: None for a dense layer (or when nothing is saved)."""
    if choice is None or choice == "dense":
        return None
    unknown = f"unknown predicted share {choice!r}; use 'dense' or a fraction like '1/10'"
    share = fraction(choice, unknown, "a learned share")
    a = max(1, math.floor(share * n))
    return None if a >= n else a


@dataclass(frozen=True)
class MacroLayer:
    """One layer: kernel (height, width), filters, stride, and the earlier layers that feed it."""

    kernel: tuple[int, int]
    filters: int
    stride: int
    inputs: tuple[int, ...]
    rank: str = "full"  # a low-rank convolution (nas.lowrank): "1/2", "1/4", ...
    learned: str = "dense"  # a predicted-parameter convolution (nas.denil): "1/4", "1/10", ... of its taps


@dataclass(frozen=True)
class MicroNode:
    """One node: inputs ``a`` and ``b`` (earlier node indices, 0 and 1 are the cell's inputs) and their ops."""

    a: int
    op_a: str
    b: int
    op_b: str


def loose_ends(nodes: Sequence[MicroNode]) -> list[int]:
    """Indices (2..) of the nodes no later node reads: the cell's output."""
    used = {i for n in nodes for i in (n.a, n.b)}
    return [i + 2 for i in range(len(nodes)) if i + 2 not in used]


@dataclass(frozen=True)
class ENASNode:
    """Node j of an ENAS cell: the earlier node it reads (ignored for node 0) and its activation."""

    prev: int
    act: str


def enas_loose_ends(nodes: Sequence[ENASNode]) -> list[int]:
    """Indices of the nodes no later node reads: their mean is the cell's output."""
    read = {n.prev for n in nodes[1:]}
    return [j for j in range(len(nodes)) if j not in read]


@dataclass(frozen=True)
class TreeSpec:
    """Zoph & Le's base-8 tree: per leaf and per inner node a combination and an activation; the memory
    cell's injection point, combination and activation, and the node whose pre-activation is c_t.

    Nodes are numbered leaves 0..7, then inner nodes 8..11 (pairs of leaves), 12..13, and the root 14.
    """

    combine: tuple[str, ...]  # 15 entries
    act: tuple[str, ...]  # 15 entries
    inject_at: int
    inject_combine: str
    inject_act: str
    cell_from: int
