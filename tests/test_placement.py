"""The placement simulator against step times worked out by hand, the profiled graphs, grouping and baselines."""

from __future__ import annotations

import statistics

import pytest
import torch

from l2l.nas.placement.baselines import expert_gnmt, min_cut, random_search, single_device
from l2l.nas.placement.graph import (
    Op,
    OpGraph,
    PlacementError,
    colocation_units,
    group_ops,
    op_timings,
    profile_model,
)
from l2l.nas.placement.models import PlacementModelError, build_model
from l2l.nas.placement.simulator import Device, Machine, memory_use, out_of_memory, simulate

# two devices of speed 1, links of 100 bytes per ms and 1 ms latency: a transfer of B bytes takes B / 100 + 1 ms
TWO = Machine((Device("a", 1.0, 1e9), Device("b", 1.0, 1e9)), bandwidth=100.0, latency_ms=1.0)


def op(name: str, inputs: tuple[int, ...], ms: float, out: int, params: int = 0) -> Op:
    return Op(name, "test", "", inputs, out, params, (f"{name}.w",) if params else (), ms)


def test_chain_across_two_devices() -> None:
    # x (1 ms) -> y (2 ms) on a; z (3 ms) on b. Forward: x 0-1, y 1-3, send y (200 B: 3 ms) 3-6, z 6-9.
    # Backward (2x): z 9-15, send dy back 15-18, y 18-22, x 22-24.
    graph = OpGraph("chain", (op("x", (), 1, 100), op("y", (0,), 2, 200), op("z", (1,), 3, 300)))
    schedule = simulate(graph, (0, 0, 1), TWO, timeline=True)
    assert schedule.step_ms == 24.0
    spans = {(i.label, i.resource): (i.start, i.end) for i in schedule.timeline}
    assert spans[("act y", "a->b")] == (3.0, 6.0) and spans[("grad y", "b->a")] == (15.0, 18.0)
    assert spans[("bwd x", "a")] == (22.0, 24.0)
    assert simulate(graph, (0, 0, 0), TWO).step_ms == 18.0  # all on a: (1 + 2 + 3) * 3, no transfer


def test_fork_runs_branches_in_parallel() -> None:
    # x (1) on a feeds y (4) on a and z (4) on b; w (1) on a reads y and z. Forward: x 0-1, y 1-5, send x 1-3,
    # z 3-7, send z 7-9, w 9-10. Backward: w 10-12, y 12-20 while dz goes 12-14 and z runs 14-22, dx back 22-24,
    # x 24-26.
    graph = OpGraph(
        "fork", (op("x", (), 1, 100), op("y", (0,), 4, 100), op("z", (0,), 4, 100), op("w", (1, 2), 1, 100))
    )
    assert simulate(graph, (0, 0, 1, 0), TWO).step_ms == 26.0
    assert simulate(graph, (0, 0, 0, 0), TWO).step_ms == 30.0  # serial: 10 ms forward, 20 ms backward


def test_busy_link_serializes_transfers() -> None:
    # p (1 ms, 300 B) and q (1 ms, 100 B) on a, both read by r (1 ms) on b. p 0-1, q 1-2; send p 1-5 (4 ms); q is
    # ready at 2 but the link is busy until 5: send q 5-7; r 7-8. Backward: r 8-10; both gradients go back on
    # b->a, q's first (its backward comes first in reverse order): 10-12, then p's 12-16; q 12-14, p 16-18.
    graph = OpGraph("link", (op("p", (), 1, 300), op("q", (), 1, 100), op("r", (0, 1), 1, 10)))
    schedule = simulate(graph, (0, 0, 1), TWO, timeline=True)
    assert schedule.step_ms == 18.0
    spans = {i.label: (i.start, i.end) for i in schedule.timeline}
    assert spans["act q"] == (5.0, 7.0) and spans["grad p"] == (12.0, 16.0)
    assert schedule.transfers == 4 and schedule.transfer_bytes == 800


def test_one_transfer_per_destination_and_faster_devices() -> None:
    # x on a is read by y and z, both on b: one transfer (2 ms). A device twice as fast halves the compute.
    graph = OpGraph("fan", (op("x", (), 2, 100), op("y", (0,), 2, 10), op("z", (0,), 2, 10)))
    fast = Machine((Device("a", 2.0, 1e9), Device("b", 1.0, 1e9)), bandwidth=100.0, latency_ms=1.0)
    schedule = simulate(graph, (0, 1, 1), fast)
    assert schedule.transfers == 2  # one activation, one summed gradient
    # x 0-1 on a; send 1-3; y 3-5, z 5-7 on b; bwd z 7-11, y 11-15; grad 15-17; bwd x (4/2) 17-19
    assert schedule.step_ms == 19.0


def test_memory_counts_parameters_with_state_and_kept_activations() -> None:
    graph = OpGraph("mem", (op("x", (), 1, 100, params=1000), op("y", (0,), 1, 50)))
    assert memory_use(graph, (0, 1), TWO) == (1000 * 4 + 100, 50 + 100)  # y's device keeps the copy of x
    small = Machine((Device("a", 1.0, 4000), Device("b", 1.0, 1e9)), bandwidth=100.0, latency_ms=1.0)
    reason = out_of_memory(graph, (0, 1), small)
    assert reason is not None and reason.startswith("out of memory on a: needs")
    assert out_of_memory(graph, (1, 1), small) is None


def test_bad_graphs_and_placements_are_refused() -> None:
    with pytest.raises(PlacementError, match="reads op 1, which does not come before it"):
        OpGraph("bad", (op("x", (1,), 1, 1), op("y", (), 1, 1)))
    graph = OpGraph("ok", (op("x", (), 1, 1),))
    with pytest.raises(PlacementError, match=r"device index 2 outside 0\.\.1"):
        simulate(graph, (2,), TWO)
    with pytest.raises(PlacementError, match="device names repeat"):
        Machine((Device("a", 1, 1), Device("a", 1, 1)), 1.0, 0.0)
    with pytest.raises(PlacementModelError, match="unknown placement model 'vgg'; known: gnmt, inception, transformer"):
        build_model("vgg")


@pytest.fixture(scope="module")
def gnmt() -> OpGraph:
    return profile_model(build_model("gnmt"), repeats=3)


def test_gnmt_graph_is_unrolled_with_measured_costs(gnmt: OpGraph) -> None:
    cells = [o for o in gnmt.ops if o.kind == "call_module:LSTMCell"]
    assert len(cells) == 8 * 8  # 4 encoder + 4 decoder layers, 8 steps each
    assert all(o.forward_ms > 0 for o in cells)
    assert gnmt.param_bytes == sum(p.numel() * 4 for p in build_model("gnmt").module.parameters())
    softmax = [o for o in gnmt.ops if o.scope == "softmax"]
    assert len(softmax) == 8 and sum(o.param_bytes for o in softmax) == (256 * 4096 + 4096) * 4
    assert OpGraph.from_json(gnmt.to_json()) == gnmt


def test_grouping_keeps_shared_weights_together_and_makes_every_group(gnmt: OpGraph) -> None:
    grouping = group_ops(gnmt, 16)
    assert sorted(set(grouping)) == list(range(16))
    units = colocation_units(gnmt)
    for unit in units:
        assert len({grouping[i] for i in unit}) == 1
    chunks = [grouping[u[0]] for u in units]
    assert chunks == sorted(chunks)  # contiguous chunks of units, in the order their first op runs
    layer0 = {grouping[i] for i, o in enumerate(gnmt.ops) if o.scope == "encoder.0"}
    assert len(layer0) == 1
    with pytest.raises(PlacementError, match="fewer than groups=100000"):
        group_ops(gnmt, 100000)


def test_baselines(gnmt: OpGraph) -> None:
    machine = Machine((Device("cpu", 1.0, 1e12), *(Device(f"gpu{i}", 10.0, 1e12) for i in range(4))), 1e7, 0.01)
    expert = expert_gnmt(gnmt, machine)
    for i, o in enumerate(gnmt.ops):
        if o.scope.startswith(("encoder.", "decoder.")):
            assert expert[i] == 1 + int(o.scope.split(".")[1])
        if o.scope == "softmax":
            assert expert[i] == 4
    one = simulate(gnmt, single_device(gnmt, 1), machine).step_ms
    assert one == pytest.approx(gnmt.forward_ms * 3 / 10)
    assert simulate(gnmt, expert, machine).step_ms < one  # the layers work as a pipeline
    grouping = group_ops(gnmt, 16)
    cut = min_cut(gnmt, grouping, machine)
    assert set(cut) == {1, 2, 3, 4} and all(cut[i] == cut[j] for i, j in zip(grouping, grouping, strict=True))
    best, step = random_search(gnmt, grouping, machine, 20, seed=0)
    assert step == simulate(gnmt, best, machine).step_ms


def test_profiled_costs_repeat_within_ten_percent() -> None:
    """The median of 45 timings of an op, taken twice, agrees within 10% for the model's forward time, and within
    15% for every op carrying 5% of it or more. The two medians come from alternate passes of one profiling run, so both
    see the same load: other jobs on this machine's two cores shift whole profiles by up to 1.7x (matrix
    products slow down when a job runs on the sibling core), which separate runs would compare instead. (With
    medians of 15 one op in a clean-clone CI run differed by 11%: 45 keep the same check, less noisy.)"""
    timings = op_timings(build_model("transformer"), passes=90)
    first = {name: statistics.median(ms[0::2]) for name, ms in timings.items()}
    second = {name: statistics.median(ms[1::2]) for name, ms in timings.items()}
    total = sum(first.values())
    assert abs(total - sum(second.values())) <= 0.1 * total
    heavy = [name for name, ms in first.items() if ms >= 0.05 * total]
    assert len(heavy) >= 3, heavy  # the feed-forward layers and the softmax, at least
    for name in heavy:
        # one op of ~2 ms moved by up to 11% between the halves on this machine's shared cores (1 run in 6)
        assert abs(first[name] - second[name]) <= 0.15 * first[name], (name, first[name], second[name])
    graph = profile_model(build_model("transformer"), repeats=3)
    assert all(op.forward_ms > 0 for op in graph.ops if op.kind.startswith("call_module"))


def test_real_step_on_two_threads_computes_the_true_gradients() -> None:
    from l2l.nas.placement.baselines import expand
    from l2l.nas.placement.real import measure_step, thread_machine

    model, reference = build_model("transformer"), build_model("transformer")
    graph = profile_model(model, repeats=1)
    reference.module(*reference.inputs).backward()
    placement = expand(group_ops(graph, 4), [0, 1, 0, 1])  # every hand-off crosses threads
    assert measure_step(model, graph, placement, threads=2, repeats=1) > 0
    for (name, p), q in zip(model.module.named_parameters(), reference.module.parameters(), strict=True):
        assert p.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-6), name  # type: ignore[arg-type]
    assert thread_machine(2).transfer_ms(10**6) == pytest.approx(0.02, abs=1e-5)  # latency only
