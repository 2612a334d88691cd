"""Plots looked at as a reader would: x positions that never go back, plain tick labels, bands that fit, and
architecture drawings of a readable size whose op labels never sit on top of each other."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from l2l.runs.arch_plot import arch_figure, plot_arch
from l2l.runs.plots import PlotError, benchmark_figure, progress_figure, save, update_mean_label, update_points
from l2l.runs.store import ChildRecord, RunRecord, UpdateRecord
from l2l.search_spaces import load_space, token_sizes

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _closed_figures() -> Iterator[None]:
    """The figures a test draws, closed after it (pyplot keeps every one open otherwise)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def run_record(transform: str = "reward") -> RunRecord:
    config = {"controller": {"reward_transform": transform}}
    return RunRecord(1, None, "toy", "reinforce", config, 0, 12, "done", "x", None, NOW, NOW, NOW)


def child(number: int, batch: int, reward: float | None, status: str = "done") -> ChildRecord:
    return ChildRecord(
        number, batch, (number,), {}, status, reward, reward, None, None, {}, {}, None, None, None,
        0.0, 2.0, 0, 1, None, NOW, NOW, NOW,
    )  # fmt: skip


def update(batch: int, children: list[int], entropy: float, mean: float = 0.5) -> UpdateRecord:
    return UpdateRecord(batch, batch + 1, 0.0, None, mean, entropy, len(children), {"children": children}, NOW)


def async_run() -> tuple[list[ChildRecord], list[UpdateRecord]]:
    """An asynchronous run: children finish out of order, some fail, and an update learns from older children
    than the one before it (child 7 came back early, 2 and 3 late)."""
    children = [
        child(n, n // 4, None if n in (3, 5) else 0.1 * n, "failed" if n in (3, 5) else "done") for n in range(12)
    ]
    # the means each update learned from: a failed child at a failure reward of -0.5
    updates = [update(0, [0, 1, 7, 4], 2.0, 0.3), update(1, [2, 3, 5, 6], 1.9, 0.15)]
    updates.append(update(2, [8, 9, 10, 11], 1.7, 0.95))
    return children, updates


def test_entropy_never_goes_back_and_sits_at_its_updates_batch_mean() -> None:
    children, updates = async_run()
    assert [x for x, _ in update_points(children, updates)] == [8, 8, 12]
    fig = progress_figure(run_record(), children, updates)
    ax, ax_ent = fig.axes
    (entropy,) = ax_ent.get_lines()
    xs = np.asarray(entropy.get_xdata(), dtype=float).tolist()
    assert xs == sorted(xs)
    (means,) = [line for line in ax.get_lines() if line.get_label() == update_mean_label(True)]
    assert np.asarray(means.get_xdata(), dtype=float).tolist() == xs  # the same x for an update's mean and its entropy
    # each mean is what that update learned from, as stored (its failures at their failure reward)
    assert np.asarray(means.get_ydata(), dtype=float).tolist() == pytest.approx([0.3, 0.15, 0.95])
    # under a reward transform the stored means are on another scale: the raw mean of the children that finished
    transformed = progress_figure(run_record("mnas(flops,1e4,-0.07)"), children, updates).axes[0]
    (raw,) = [line for line in transformed.get_lines() if line.get_label() == update_mean_label(False)]
    assert np.asarray(raw.get_ydata(), dtype=float).tolist() == pytest.approx(
        [(0.0 + 0.1 + 0.7 + 0.4) / 4, (0.2 + 0.6) / 2, 0.95]
    )


def test_a_transformed_reward_is_named_in_the_title_and_the_axis_says_raw() -> None:
    children, updates = async_run()
    fig = progress_figure(run_record("mnas(flops,1e4,-0.07)"), children, updates)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "reward (raw)"  # short: a long label ran past its panel
    assert ax.get_title().endswith("\nthe controller learns from mnas(flops,1e4,-0.07)")
    plain = progress_figure(run_record(), children, updates).axes[0]
    assert plain.get_ylabel() == "reward" and "\n" not in plain.get_title()


def test_a_near_constant_axis_has_no_offset_label() -> None:
    children = [child(n, n, 13.0763 + 1e-6 * (n % 7)) for n in range(20)]
    updates = [update(n, [n], 2.77 + 1e-7 * n) for n in range(20)]
    fig = progress_figure(run_record(), children, updates)
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.yaxis.get_offset_text().get_text() == ""
        assert ax.xaxis.get_offset_text().get_text() == ""
    # with a batch of 1 an update's mean is its child's reward: no second line on top of the points
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["best so far"]


def test_benchmark_bands_start_where_they_fit_the_frame() -> None:
    n = 200
    mean = [94.0 - 6.0 / (q + 1) for q in range(n)]
    sd = [15.0 / (q + 1) + 0.2 for q in range(n)]  # wide at first, as over 100 seeds of NAS-Bench-201
    fig = benchmark_figure({"dataset": "cifar10", "seeds": 100, "curves": {"a": {"mean": mean, "sd": sd}}})
    whole, bands = fig.axes
    assert not whole.collections  # every query's mean, no band
    (band,) = bands.collections
    low, high = bands.get_ylim()
    xy = np.asarray(band.get_paths()[0].vertices, dtype=float)
    assert xy[:, 0].min() >= 20
    assert low <= xy[:, 1].min() and xy[:, 1].max() <= high  # no band leaves the frame
    assert high - low < 5  # a scale on which the later differences show


def micro_graph(tokens: tuple[int, ...] | None = None) -> dict[str, Any]:
    space = load_space("micro")
    return space.graph(space.decode(tokens or tuple(0 for _ in space.decisions())))


PARALLEL = {  # two ops on one input, on neighbouring nodes and on a longer span
    "nodes": ["in", "a", "b", "c", "out"],
    "edges": [[0, 1, "conv"], [0, 1, "pool"], [1, 2, "id"], [1, 2, "conv"], [0, 3, "x"], [0, 3, "y"], [3, 4, "cat"]],
}


@pytest.mark.parametrize("graph", [PARALLEL, micro_graph()], ids=["parallel", "micro"])
def test_arch_is_readable_and_no_two_op_labels_overlap(graph: dict[str, Any], tmp_path: Path) -> None:
    fig = arch_figure(graph, "a title")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = [t for ax in fig.axes for t in ax.texts if t.get_text() not in graph["nodes"]]
    assert len(labels) == len(graph["edges"])
    boxes = [t.get_window_extent(renderer) for t in labels]
    for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
    assert min(float(t.get_fontsize()) for t in labels) >= 6
    arcs = [
        tuple(map(tuple, np.asarray(patch.get_path().vertices, dtype=float).round(1)))
        for ax in fig.axes
        for patch in ax.patches
    ]
    assert len(arcs) == len(graph["edges"]) == len(set(arcs))  # no two ops drawn on one arc
    nodes = [t for ax in fig.axes for t in ax.texts if t.get_text() in graph["nodes"]]
    assert len({round(t.get_position()[1], 3) for t in nodes}) == 1 and len(fig.axes) <= 2  # a row per cell
    from PIL import Image

    width, height = Image.open(plot_arch(graph, "a title", tmp_path / "arch.png")).size
    assert 600 <= width <= 1400 and height <= 1600, (width, height)  # a micro cell was 3344 x 1430


def test_an_input_no_op_reads_is_drawn_in_its_own_cells_row() -> None:
    """A reduction cell that never reads c[k-2]: that input was drawn in the normal cell's row, after its output."""
    import random

    space, rng = load_space("micro"), random.Random(0)
    sizes = token_sizes(space.decisions())
    for _ in range(2000):
        graph = space.graph(space.decode(tuple(rng.randrange(k) for k in sizes)))
        touched = {k for i, j, _ in graph["edges"] for k in (i, j)}
        lone = [k for k, name in enumerate(graph["nodes"]) if k not in touched]
        if [graph["nodes"][k] for k in lone] == ["reduce: c[k-2]"]:
            break
    else:
        raise AssertionError("no such cell drawn")
    fig = arch_figure(graph, "a title")
    rows = [{t.get_text() for t in ax.texts if t.get_text() in graph["nodes"]} for ax in fig.axes]
    assert any({"reduce: c[k-2]", "reduce: c[k-1]", "reduce out"} <= row for row in rows), rows
    assert not any("normal out" in row and "reduce: c[k-2]" in row for row in rows), rows


def test_a_file_type_matplotlib_cannot_write_is_one_error() -> None:
    children, updates = async_run()
    with pytest.raises(PlotError, match=r"cannot write 'p.xyz': unknown image type 'xyz'; known: .*png"):
        save(progress_figure(run_record(), children, updates), Path("p.xyz"), dpi=100)


def test_pareto_axis_names_what_it_plots(tmp_path: Path) -> None:
    """Children with a validation accuracy are plotted by it; a space without one (a perplexity) by its reward,
    and the axis says which."""
    import dataclasses

    from l2l.runs.plots import pareto_axis, plot_pareto

    costed = [
        dataclasses.replace(child(n, 0, 0.1 * n), metrics={"cost": {"flops": 10.0 * (n + 1)}}) for n in range(1, 4)
    ]
    accurate = [dataclasses.replace(c, val_acc=c.reward) for c in costed]
    assert pareto_axis(accurate) == "validation accuracy"
    assert pareto_axis(costed).startswith("reward")
    assert pareto_axis([*accurate[:2], costed[2]]).startswith("reward")  # one child without: the reward for all
    _, front, evaluations = plot_pareto(run_record(), costed, "flops", tmp_path / "p.png")
    assert [n for _, _, n in front] == [1, 2, 3]  # each costs more and scores more: all on the front
    assert evaluations == {1: 1, 2: 1, 3: 1}


def test_pareto_points_are_architectures_with_the_mean_of_their_evaluations() -> None:
    """A re-evaluated architecture is one point at its mean, not a stack whose luckiest draw makes the front."""
    from l2l.runs.plots import pareto_points

    def evaluation(n: int, tokens: tuple[int, ...], acc: float, flops: float) -> ChildRecord:
        c = dataclasses.replace(child(n, 0, acc), tokens=tokens, val_acc=acc)
        return dataclasses.replace(c, metrics={"cost": {"flops": flops}})

    cheap, dear = (0,), (1,)
    children = [evaluation(0, cheap, 0.60, 10.0), evaluation(1, dear, 0.80, 100.0), evaluation(2, cheap, 0.70, 10.0)]
    points, evaluations = pareto_points(children, "flops")
    assert points == [(10.0, pytest.approx(0.65), 0), (100.0, 0.80, 1)] and evaluations == {0: 2, 1: 1}


def test_progress_of_a_weight_sharing_run_plots_its_shared_weight_scores() -> None:
    run = dataclasses.replace(run_record(), config={"weight_sharing": {"epochs": 2}, "controller": {}})
    children = [child(n, n // 2, 0.1 * n, "shared") for n in range(6)] + [child(6, -1, 0.9, "done")]  # 6: retrained
    ax = progress_figure(run, children, [update(0, [0, 1], 2.0), update(1, [2, 3], 1.9)]).axes[0]
    assert ax.get_ylabel() == "reward with shared weights"
    (best,) = [line for line in ax.get_lines() if line.get_label() == "best so far"]
    assert np.asarray(best.get_xdata(), dtype=float).tolist() == [0, 1, 2, 3, 4, 5]  # the scores, not the retraining


def test_a_strategy_without_entropy_gets_a_note_not_a_line_at_zero() -> None:
    children = [child(n, n, 0.1 * n) for n in range(4)]
    fig = progress_figure(run_record(), children, [update(n, [n], 0.0) for n in range(4)])
    assert not fig.axes[1].get_lines() and [t.get_text() for t in fig.axes[1].texts] == ["reinforce reports no entropy"]
    fig = progress_figure(run_record(), children, [update(n, [n], 1.0) for n in range(4)])
    assert len(fig.axes[1].get_lines()) == 1 and not fig.axes[1].texts


def test_a_run_with_nothing_finished_is_one_error_not_empty_axes() -> None:
    pending = [child(n, 0, None, "running") for n in range(3)]
    with pytest.raises(PlotError, match=r"run 1 \(done\) has no child finished yet: nothing to plot"):
        progress_figure(run_record(), pending, [])
    failed = [child(0, 0, None, "failed")]
    assert progress_figure(run_record(), failed, []).axes[0].collections  # failures alone are worth a plot


def test_a_tree_cells_nodes_fit_side_by_side_with_its_memory_in_and_out() -> None:
    """Zoph & Le's tree: 15 nodes' boxes overlapped and their labels were clipped; c[t-1], c[t] and h[t] were
    not drawn."""
    space = load_space("rnn_cell", {"cell": "tree"})
    graph = space.graph(space.decode(tuple(0 for _ in space.decisions())))
    assert graph["nodes"][0] == "c[t-1]" and graph["nodes"][-2:] == ["c[t]", "h[t]"]
    fig = arch_figure(graph, "a tree")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    nodes = [t for ax in fig.axes for t in ax.texts if t.get_text() in graph["nodes"]]
    assert len(nodes) == 18
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in nodes]  # type: ignore[union-attr]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    assert min(float(t.get_fontsize()) for t in nodes) >= 6


def test_failures_sit_on_the_bottom_edge_not_at_a_made_up_reward() -> None:
    """Failed children were drawn at the run's lowest reward (0.0 with none), on an axis of rewards, and a legend
    named points that were not there."""
    children, updates = async_run()
    ax = progress_figure(run_record(), children, updates).axes[0]
    (marks,) = [c for c in ax.collections if np.asarray(c.get_offsets()).shape[0] == 2]  # children 3 and 5
    assert marks.get_offset_transform() is ax.get_xaxis_transform()  # x in data, y in the axes' fraction
    assert np.asarray(marks.get_offsets())[:, 1].tolist() == [0.02, 0.02]
    best = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    assert np.asarray(best.get_xdata())[-1] == 11  # it holds to the last child
    only_failed = progress_figure(run_record(), [child(0, 0, None, "failed")], []).axes[0]
    labels = only_failed.get_legend_handles_labels()[1]
    assert "child reward" not in labels and "failed (no reward; on the bottom edge)" in labels


@pytest.mark.parametrize(
    "payload, message",
    [
        ([1, 2], "the JSON has no 'curves'"),
        ({"curves": 5}, "'curves' must map each strategy to its mean and sd lists, got int"),
        ({"curves": {"a": {"mean": [1, 2, 3]}}}, "curve 'a' must hold 'mean' and 'sd'"),
        ({"curves": {"a": {"mean": [1, 2], "sd": [1]}}}, "curve 'a' must hold"),
        ({"curves": {"a": {"mean": ["x"], "sd": [1]}}}, "curve 'a' must hold"),
    ],
)
def test_a_benchmark_file_that_does_not_fit_is_named(payload: object, message: str) -> None:
    with pytest.raises(PlotError, match=re.escape(message)):
        benchmark_figure(payload)  # type: ignore[arg-type]


def test_an_image_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    children, updates = async_run()
    with pytest.raises(PlotError, match="is a directory"):
        save(progress_figure(run_record(), children, updates), tmp_path, dpi=50)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PlotError, match=r"file'? is not a directory"):
        save(progress_figure(run_record(), children, updates), tmp_path / "file" / "x.png", dpi=50)


def test_a_pareto_plot_of_a_run_with_nothing_finished_says_so_not_that_a_cost_is_missing(tmp_path: Path) -> None:
    from l2l.runs.plots import plot_pareto

    with pytest.raises(PlotError, match=r"run 1 \(done\) has no child finished yet: nothing to plot"):
        plot_pareto(run_record(), [child(0, 0, None, "failed")], "flops", tmp_path / "p.png")


def test_failures_outside_the_finished_childrens_range_are_still_on_the_figure() -> None:
    """Drawn on the axes' y, the failure marks did not widen the x-range: the first ten of twelve children failing,
    or forty failing with nothing else, left them off the figure."""
    early = [child(n, 0, None, "failed") for n in range(10)] + [child(n, 0, 0.5, "done") for n in (10, 11)]
    for children in (early, [child(n, 0, None, "failed") for n in range(40)]):
        ax = progress_figure(run_record(), children, []).axes[0]
        low, high = ax.get_xlim()
        assert low <= 0 and high >= max(c.number for c in children)


def test_a_pareto_plot_of_a_weight_sharing_run_says_its_costs_come_from_retraining(tmp_path: Path) -> None:
    from l2l.runs.plots import plot_pareto

    run = dataclasses.replace(run_record(), config={"weight_sharing": {}, "controller": {}})
    scores = [child(n, 0, 0.5, "shared") for n in range(3)]
    with pytest.raises(PlotError, match=r"costs come from retraining: l2l runs best 1 --retrain"):
        plot_pareto(run, scores, "flops", tmp_path / "p.png")
