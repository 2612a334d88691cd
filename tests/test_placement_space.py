"""The `placement` space: options, rewards from the simulator, out-of-memory children, stored profiles."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from l2l.nas.placement import simulate
from l2l.nas.placement.baselines import expand
from l2l.search_spaces import Context, SpaceError, load_space
from l2l.search_spaces.placement import PlacementSpace

FAST: dict[str, Any] = {"model": "transformer", "groups": 8, "repeats": 1}


def test_reward_is_minus_sqrt_of_the_simulated_step_in_seconds() -> None:
    space = load_space("placement", FAST)
    assert space.exact_rewards() and len(space.decisions()) == 8
    spec = space.decode([1] * 8)  # everything on gpu0
    result = space.evaluate(spec, Context())
    assert isinstance(space, PlacementSpace)
    graph = space.op_graph()
    step = simulate(graph, [1] * len(graph.ops), space.machine).step_ms
    assert result.cost["step_time_ms"] == step == pytest.approx(graph.forward_ms * 3 / 10)
    assert result.reward == -math.sqrt(step / 1000.0)
    assert result.info["placement"] == ["gpu0"] * 8 and result.info["transfers"] == 0
    assert space.describe(spec) == "g0-7=gpu0"
    assert space.describe(space.decode([1, 1, 2, 0, 0, 0, 0, 4])) == "g0-1=gpu0 g2=gpu1 g3-6=cpu g7=gpu3"
    inv = PlacementSpace(**FAST, reward="inv").evaluate(spec, Context())
    assert inv.reward == pytest.approx(1000.0 / step)


def test_a_placement_that_does_not_fit_fails_with_the_reason() -> None:
    space = PlacementSpace(**FAST, gpu_memory_gb=0.05)  # 50 MB: the parameters and Adam's state alone are 67 MB
    result = space.evaluate(space.decode([1] * 8), Context())
    assert result.status == "failed" and not result.ok
    assert result.error is not None and result.error.startswith("out of memory on gpu0: needs")
    split = space.evaluate(space.decode([1, 1, 2, 2, 3, 3, 4, 4]), Context())
    assert split.ok, split.error  # spread over four GPUs it fits


def test_cpu_is_slower_and_transfers_cost() -> None:
    space = PlacementSpace(**FAST)
    gpu = space.evaluate(space.decode([1] * 8), Context()).cost["step_time_ms"]
    cpu = space.evaluate(space.decode([0] * 8), Context()).cost["step_time_ms"]
    assert cpu == pytest.approx(10 * gpu)
    slow_links = PlacementSpace(**FAST, bandwidth_gbs=0.001)
    spread = slow_links.decode([1, 2, 1, 2, 1, 2, 1, 2])
    assert slow_links.evaluate(spread, Context()).cost["step_time_ms"] > 2 * gpu


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "vgg"}, "unknown placement model 'vgg'; known: gnmt, inception, transformer"),
        ({"reward": "fast"}, "unknown placement reward 'fast'; known: neg_sqrt, neg, inv"),
        ({"devices": "cpu,tpu0"}, "placement device 'tpu0' must start with one of: cpu, gpu"),
        ({"devices": "gpu0,gpu0"}, "placement option devices must name distinct devices"),
        ({"devices": "cpu,,gpu0"}, "placement option devices has an empty name, got 'cpu,,gpu0'"),
        ({"groups": 0}, "placement option groups must be an integer >= 1, got 0"),
        ({"gpu_speed": -1}, "placement option gpu_speed must be a number > 0, got -1"),
        ({"latency_us": -1}, "placement option latency_us must be a number >= 0, got -1"),
    ],
)
def test_bad_options_name_the_option_and_what_is_allowed(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SpaceError) as info:
        PlacementSpace(**options)
    assert message in str(info.value)


def test_too_many_groups_fail_on_use_with_the_count() -> None:
    space = PlacementSpace(model="transformer", groups=500, repeats=1)
    with pytest.raises(SpaceError, match=r"placement option groups: model 'transformer' has \d+ co-location units"):
        space.evaluate(space.decode([0] * 500), Context())


def test_a_stored_profile_replaces_profiling(tmp_path: Path) -> None:
    space = PlacementSpace(**FAST)
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(space.op_graph().to_json()))
    again = PlacementSpace(**FAST, profile=str(path))
    assert again.op_graph() == space.op_graph()
    spec = space.decode([1, 2, 3, 4, 1, 2, 3, 4])
    assert again.evaluate(spec, Context()).reward == space.evaluate(spec, Context()).reward
    by_model = tmp_path / "profiles.json"
    by_model.write_text(json.dumps({"transformer": space.op_graph().to_json()}))
    assert PlacementSpace(**FAST, profile=str(by_model)).op_graph() == space.op_graph()
    with pytest.raises(SpaceError, match="holds model 'transformer', not 'gnmt'"):
        PlacementSpace(model="gnmt", profile=str(path)).op_graph()
    worker = PlacementSpace(**FAST)
    worker.use_shared_data(space.shared_data())
    assert worker.op_graph() == space.op_graph()
    assert expand(space.grouping(), list(range(8)))[0] == 0


def test_plot_placement_of_a_search(tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    runner = CliRunner()
    storage = f"sqlite:///{tmp_path}/runs.db"
    options = [x for k, v in FAST.items() for x in ("-S", f"{k}={v}")]
    search = [
        "search",
        "--space",
        "placement",
        *options,
        "--children",
        "8",
        "--executor",
        "local",
        "--storage",
        storage,
    ]
    out = runner.invoke(app, [*search, "-q"])
    assert out.exit_code == 0, out.output
    top = runner.invoke(app, ["runs", "top", "1", "--storage", storage], terminal_width=200).output
    assert "step_time_ms" in top and "val acc" not in top  # a simulated step has no validation figure to show
    best = runner.invoke(app, ["runs", "best", "1", "--storage", storage]).output
    assert re.search(r"best of run 1: child \d+, reward -[\d.]+, step_time_ms [\d.]+: g0=", best), best
    png = tmp_path / "placement.png"
    out = runner.invoke(app, ["plot", "placement", "1", "-o", str(png), "--storage", storage])
    assert out.exit_code == 0, out.output
    assert "wrote" in out.output and Image.open(png).size == (1440, 900)
    arch = runner.invoke(app, ["plot", "arch", "1", "-o", str(tmp_path / "a.png"), "--storage", storage])
    assert arch.exit_code == 1 and "a placement is drawn by `l2l plot placement 1 --storage" in arch.output
    toy = runner.invoke(
        app, ["search", "--space", "toy", "--children", "2", "--executor", "local", "--storage", storage, "-q"]
    )
    assert toy.exit_code == 0, toy.output
    out = runner.invoke(app, ["plot", "placement", "2", "-o", str(png), "--storage", storage])
    assert out.exit_code != 0 and "run 2 searched the space 'toy'; plot placement draws placement runs" in out.output


def test_the_plot_says_when_its_simulated_step_differs_from_the_recorded_one() -> None:
    from l2l.runs.placement_plots import placement_figure

    space = PlacementSpace(**FAST)
    spec = space.decode([0] * len(space.decisions()))
    step = space.schedule(spec).step_ms
    long_title = "run 1, child 0: " + " ".join(f"g{k}=gpu0" for k in range(60))
    same = placement_figure(space, spec, long_title, recorded_ms=step)
    assert (
        same.axes[1].get_xlabel()
        == f"simulated time (ms); one training step = {step:.2f} ms (forward solid, backward light)"
    )
    assert all(len(line) <= 150 for line in same.axes[0].get_title().split("\n"))  # wrapped, not cut off
    other = placement_figure(space, spec, "t", recorded_ms=step + 0.4)
    assert f"(the child's own simulation: {step + 0.4:.2f} ms)" in other.axes[1].get_xlabel()
    measured = placement_figure(space, spec, "t", recorded_ms=step, measured_ms=170.25)
    assert " ".join(measured.axes[1].get_xlabel().split()).endswith(
        "(measured: 170.25 ms) (forward solid, backward light)"
    )


def test_measure_times_real_steps_on_cpu_threads() -> None:
    space = PlacementSpace(model="transformer", groups=4, repeats=1, devices="thread0,thread1", measure=True)
    assert not space.exact_rewards() and space.options["measure"] is True
    result = space.evaluate(space.decode([0, 1, 0, 1]), Context())
    assert result.ok and result.cost["step_time_ms"] > 0 and result.info["simulated_ms"] > 0
    assert result.cost["step_time_ms"] != result.info["simulated_ms"]  # measured, not simulated
    assert result.reward == -math.sqrt(result.cost["step_time_ms"] / 1000.0)
    with pytest.raises(SpaceError, match="placement option measure: real steps run on CPU threads only"):
        PlacementSpace(measure=True)


def test_a_run_keeps_its_profile_so_resume_and_retraining_give_its_rewards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The op timings are measured once, when the run starts, and stored with it: a process that rebuilds the
    space (to resume the run, retrain a child or draw it) reuses them instead of profiling again."""
    import dataclasses

    from typer.testing import CliRunner

    import l2l.search_spaces.placement as placement
    from l2l.nas.placement import OpGraph
    from l2l.runs.cli import app
    from l2l.runs.search import Search, SearchConfig
    from l2l.runs.store import Store

    runner = CliRunner()
    storage = f"sqlite:///{tmp_path}/runs.db"
    options = [x for k, v in FAST.items() for x in ("-S", f"{k}={v}")]
    args = ["search", "--space", "placement", *options, "-n", "6", "--executor", "local", "--storage", storage, "-q"]
    assert runner.invoke(app, args).exit_code == 0
    store = Store(storage)
    measured = OpGraph.from_json(store.space_data(1)["placement_graph"])
    assert measured == PlacementSpace(**FAST).op_graph()  # what this process profiled, kept

    def another_machine(model: str, repeats: int, backward_factor: float) -> OpGraph:  # 3x slower ops
        return dataclasses.replace(
            measured, ops=tuple(dataclasses.replace(op, forward_ms=op.forward_ms * 3 + 0.1) for op in measured.ops)
        )

    run = Search.start(store, SearchConfig(space="placement", space_options=FAST, children=4, executor="local"))
    store.set_run_status(run.run_id, "interrupted")  # started here, before the machine changes
    monkeypatch.setattr(placement, "profiled", another_machine)
    best = store.top_children(1, 1)[0]
    out = runner.invoke(app, ["runs", "best", "1", "--by", "single", "--retrain", "--storage", storage])
    assert out.exit_code == 0, out.output
    assert out.output.count(f"reward {best.reward:.4f}") == 2, out.output  # the child's, and its retraining's
    # a run resumed in another process simulates the graph it started with
    resumed = Search.resume(store, run.run_id).space
    assert isinstance(resumed, PlacementSpace) and resumed.op_graph() == measured
    assert PlacementSpace(**FAST).op_graph() != measured  # a space without the run's data profiles anew


def test_more_groups_than_the_model_has_is_refused_before_a_run_is_recorded(tmp_path: Path) -> None:
    from l2l.runs.search import Search, SearchConfig
    from l2l.runs.store import Store

    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    config = SearchConfig(space="placement", space_options={**FAST, "groups": 1000}, children=4, executor="local")
    with pytest.raises(SpaceError, match=r"placement option groups: model 'transformer' has \d+ co-location units"):
        Search.start(store, config)
    assert store.list_runs() == []
