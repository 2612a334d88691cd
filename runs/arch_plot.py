"""The drawing of one architecture's graph (`l2l plot arch`, the dashboard): nodes in columns, edges labelled."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2l.runs.plots import PlotError, pyplot, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure


ARCH_DPI, ARCH_MAX_WIDTH = 110, 12.0  # inches: at most 1,320 pixels wide, with text readable at that size
EDGE_LABEL = "#7a1f1f"


def _components(n_nodes: int, edges: list[tuple[int, int, str]], labels: list[str] | None = None) -> list[list[int]]:
    """The graph's weakly connected parts, each a sorted list of nodes (a micro space's normal and reduction cell).
    A node no edge touches joins the neighbour whose label starts with the same word (``reduce: c[k-2]`` joins
    ``reduce: c[k-1]``, not the ``normal out`` before it), else the one before it."""
    parent = list(range(n_nodes))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j, _ in edges:
        parent[root(i)] = root(j)
    joined = {k for i, j, _ in edges for k in (i, j)}

    def word(k: int) -> str:
        return re.split(r"[:\s]", labels[k], maxsplit=1)[0] if labels else ""

    for k in range(n_nodes):  # an input no op reads stays beside its neighbour, not on a row of its own
        if k not in joined and n_nodes > 1:
            near = [m for m in (k + 1, k - 1) if 0 <= m < n_nodes and word(m) == word(k) and labels]
            parent[root(k)] = root(near[0] if near else (k - 1 if k else 1))
    parts: dict[int, list[int]] = {}
    for k in range(n_nodes):
        parts.setdefault(root(k), []).append(k)
    return sorted(parts.values())


def _bends(edges: list[tuple[int, int, str]], place: dict[int, int], step: float) -> list[float]:
    """Each edge's arc3 ``rad``: neighbours straight, a longer span peaks higher (by about half a node gap per node
    it jumps), on alternating sides; edges that join the same two nodes (two ops on one input) fan out, one per
    side and further out, never on top of each other."""
    seen: dict[tuple[int, int], int] = {}
    rads, side = [], 1.0
    for i, j, _ in edges:
        span = abs(place[j] - place[i])
        k = seen.get((i, j), 0)
        seen[(i, j)] = k + 1
        peak = 0.0 if span == 1 else 0.35 * step * (span - 1) / 2 + 0.4
        if k or sum(1 for a, b, _ in edges if (a, b) == (i, j)) > 1:
            peak = max(peak, 0.5) + 0.5 * (k // 2)
            sign = 1.0 if k % 2 == 0 else -1.0
        else:
            sign = side
            side = -side if peak else side
        rads.append(sign * 2 * peak / (step * span))  # arc3 peaks at rad * distance / 2
    return rads


def arch_figure(graph: dict[str, Any], title: str) -> Figure:
    """An architecture graph: each connected part (a cell) on a row of its own, nodes left to right, each edge an
    arc labelled with its op; labels that would touch are moved apart."""
    import textwrap

    from matplotlib.patches import FancyArrowPatch

    try:  # a plugin's graph(): say what is wrong with it rather than fail somewhere inside the drawing
        if not isinstance(graph["nodes"], list | tuple):
            raise TypeError("nodes is not a list")
        nodes = [str(n) for n in graph["nodes"]]
        edges = [(int(i), int(j), str(label)) for i, j, label in graph["edges"]]
    except (KeyError, TypeError, ValueError):
        raise PlotError(
            "the space's graph() must give {'nodes': [label, ...], 'edges': [[from, to, label], ...]}, "
            f"got {str(graph)[:120]}"
        ) from None
    plt = pyplot()
    for i, j, _ in edges:
        if not (0 <= i < len(nodes) and 0 <= j < len(nodes)):
            raise PlotError(f"edge {i} -> {j} refers to a node that does not exist (nodes 0..{len(nodes) - 1})")
    parts = _components(len(nodes), edges, [str(n) for n in nodes]) if nodes else [[]]
    widest = max(len(p) for p in parts)
    chars = max([len(line) for n in nodes for line in n.splitlines()] + [1])  # a node's widest line
    step = 2.0 + 0.06 * chars  # room for the node boxes' text between nodes
    rows = []
    for part in parts:
        place = {k: n for n, k in enumerate(part)}
        own = [e for e in edges if e[0] in place]
        rads = _bends(own, place, step)
        peaks = [r * step * abs(place[j] - place[i]) / 2 for (i, j, _), r in zip(own, rads, strict=True)]
        reach = (max([-p for p in peaks] + [0.5]) + 0.7, max([*peaks, 0.5]) + 0.7)  # below and above the nodes
        rows.append((part, place, own, rads, reach))
    x_range = step * max(widest - 1, 1) + 2.6
    width = min(ARCH_MAX_WIDTH, max(6.0, 1.25 * widest))
    heights = [sum(r[4]) for r in rows]
    fig, axes = plt.subplots(
        len(rows),
        1,
        figsize=(width, width * sum(heights) / x_range + 0.8),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    room = step * width * 72 / x_range  # points between neighbouring nodes' centres
    fits = (room - 3) / (0.6 * chars + 0.8)  # the font whose boxes (text and padding) do not touch
    font = max(5.0, min(8.0 if widest <= 10 else 7.0, fits))
    labels, boxes = [], []
    for ax, (part, place, own, rads, reach) in zip([a[0] for a in axes], rows, strict=True):
        xs = {k: step * n for k, n in place.items()}
        for k in part:
            boxes.append(
                ax.text(
                    xs[k],
                    0,
                    nodes[k],
                    ha="center",
                    va="center",
                    fontsize=font,
                    zorder=3,
                    bbox={"boxstyle": "round,pad=0.4", "fc": "#dde8f5", "ec": "#1f4e79"},
                )
            )
        for (i, j, label), rad in zip(own, rads, strict=True):
            ax.add_patch(
                FancyArrowPatch(
                    (xs[i], 0),
                    (xs[j], 0),
                    connectionstyle=f"arc3,rad={-rad}",
                    arrowstyle="-|>",
                    mutation_scale=10,
                    color="#444444",
                    lw=1.0,
                    shrinkA=18,
                    shrinkB=18,
                )
            )
            if label:
                # arc3's curve peaks at half its control point's offset: rad * dx / 2 from the axis
                y = rad * (xs[j] - xs[i]) / 2
                labels.append(
                    ax.text(
                        (xs[i] + xs[j]) / 2,
                        y,
                        label,
                        ha="center",
                        va="bottom" if rad >= 0 else "top",
                        fontsize=font - 1,
                        color=EDGE_LABEL,
                        zorder=4,
                        bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
                    )
                )
        ax.set_xlim(-1.3, step * (widest - 1) + 1.3)
        ax.set_ylim(-reach[0], reach[1])
        ax.set_aspect("equal")
        ax.axis("off")
    per_line = max(40, int(fig.get_figwidth() * 72 / (0.6 * font)))  # what fits across the figure
    fig.suptitle("\n".join(textwrap.wrap(title, per_line)), fontsize=font)
    fig.tight_layout()
    _separate(fig, labels, boxes)
    return fig


def _separate(fig: Figure, labels: list[Any], nodes: list[Any]) -> None:
    """Move edge labels that overlap a node or an earlier label away from the axis until none touch."""
    fig.canvas.draw()  # places the node boxes
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    placed: list[Any] = [n.get_bbox_patch().get_window_extent(renderer) for n in nodes]
    for text in labels:
        for _ in range(40):
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            if not any(box.overlaps(other) for other in placed):
                break
            x, y = text.get_position()
            up = text.get_va() == "bottom"
            shift = text.axes.transData.inverted().transform(
                (0, box.height)
            ) - text.axes.transData.inverted().transform((0, 0))
            text.set_position((x, y + (shift[1] if up else -shift[1])))
        placed.append(text.get_window_extent(renderer))


def plot_arch(graph: dict[str, Any], title: str, out: Path) -> Path:
    """Write `arch_figure` to ``out``."""
    return save(arch_figure(graph, title), out, dpi=ARCH_DPI)
