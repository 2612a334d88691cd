"""`l2l plot placement`: a placement's groups coloured by device and the simulated timeline of one step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2l.runs.plots import PlotError, save
from l2l.search_spaces import Spec
from l2l.search_spaces.placement import PlacementSpace

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def placement_figure(
    space: PlacementSpace, spec: Spec, title: str, recorded_ms: float | None = None, measured_ms: float | None = None
) -> Figure:
    """Top: the groups in order, coloured by their device, arcs for the tensors between them. Bottom: a Gantt
    chart per device and per busy link: forward ops solid, backward ops light, transfers grey. The step is
    simulated again here, on this process's profile of the model; ``recorded_ms`` (the child's own simulation,
    on its profile) is shown beside it when they differ, and ``measured_ms`` (a measured child's real step)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schedule = space.schedule(spec, timeline=True)
    graph = space.graph(spec)
    devices = list(space.device_names)
    colours = {d: plt.get_cmap("tab10")(k % 10) for k, d in enumerate(devices)}
    on = [str(spec[d.name]) for d in space.decisions()]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.5), gridspec_kw={"height_ratios": [1, 2]})
    n = len(graph["nodes"])
    heaviest = max((int(label.split()[0]) for _, _, label in graph["edges"]), default=1) or 1
    for a, b, label in graph["edges"]:
        mid, half = (a + b) / 2, abs(b - a) / 2
        xs = [mid + half * c for c in (-1.0, -0.7, -0.3, 0.0, 0.3, 0.7, 1.0)]
        ys = [half * (1 - ((x - mid) / half) ** 2) * 0.5 if half else 0.0 for x in xs]
        top.plot(xs, ys, color="0.55", lw=0.5 + 3 * int(label.split()[0]) / heaviest, zorder=1)
    for k in range(n):
        top.scatter([k], [0], s=420, color=colours[on[k]], edgecolor="black", zorder=2)
        top.annotate(str(k), (k, 0), ha="center", va="center", fontsize=8, zorder=3)
    top.set_xlim(-1, n)
    top.set_ylim(-0.6, max(1.0, n / 4))
    top.set_yticks([])
    top.set_xlabel("group (ops in topological order); arcs: bytes sent between groups")
    for d in devices:
        top.scatter([], [], color=colours[d], label=d)
    top.legend(loc="upper right", ncol=len(devices), fontsize=8)
    top.set_title("\n".join(textwrap.wrap(title, 150)), fontsize=9)
    links = sorted({i.resource for i in schedule.timeline if "->" in i.resource})
    rows = devices + links
    for i in schedule.timeline:
        y = rows.index(i.resource)
        link = "->" in i.resource
        colour: Any = "0.4" if link else colours[i.resource]
        alpha = 0.9 if link else 1.0 if i.label.startswith("fwd") else 0.45
        bottom.barh(y, i.end - i.start, left=i.start, height=0.7, color=colour, alpha=alpha, linewidth=0)
    bottom.set_yticks(range(len(rows)), rows, fontsize=8)
    bottom.invert_yaxis()
    step = f"one training step = {schedule.step_ms:.2f} ms"
    notes = []
    if recorded_ms is not None and abs(recorded_ms - schedule.step_ms) >= 0.005:
        notes.append(f"the child's own simulation: {recorded_ms:.2f} ms")
    if measured_ms is not None:
        notes.append(f"measured: {measured_ms:.2f} ms")
    if notes:
        step += f" on this plot's profile of the model ({'; '.join(notes)})"
    label = f"simulated time (ms); {step} (forward solid, backward light)"
    bottom.set_xlabel("\n".join(textwrap.wrap(label, 150)))
    fig.tight_layout()
    return fig


def plot_placement(
    space: PlacementSpace,
    spec: Spec,
    title: str,
    out: Path,
    recorded_ms: float | None = None,
    measured_ms: float | None = None,
) -> Path:
    """Write `placement_figure` to ``out``."""
    if spec.space != space.name:
        raise PlotError(f"spec of space {spec.space!r} is not a placement")
    return save(placement_figure(space, spec, title, recorded_ms, measured_ms), out, dpi=120)
