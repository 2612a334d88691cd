"""`placement`: which device of a declared machine runs each group of a real model's ops (Mirhoseini et al., 2017)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from l2l.nas.placement import (
    MODELS,
    Device,
    Machine,
    OpGraph,
    PlacementError,
    Schedule,
    build_model,
    group_ops,
    out_of_memory,
    profile_model,
    simulate,
)
from l2l.nas.placement.baselines import expand
from l2l.nas.placement.graph import group_edges
from l2l.nas.placement.real import measure_step
from l2l.search_spaces.api import Context, Decision, Result, SearchSpace, SpaceError, Spec

# reward from the step time in seconds: -sqrt(t) as in the paper, -t, or 1 / t
REWARDS: dict[str, Callable[[float], float]] = {
    "neg_sqrt": lambda s: -math.sqrt(s),
    "neg": lambda s: -s,
    "inv": lambda s: 1.0 / s,
}
DEVICE_KINDS = ("cpu", "gpu", "thread")  # a thread is a CPU thread of this process (`measure=true`)


@lru_cache(maxsize=8)
def profiled(model: str, repeats: int, backward_factor: float) -> OpGraph:
    """The model's graph profiled once per process (every space over it shares the measurement)."""
    return profile_model(build_model(model), repeats, backward_factor)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise SpaceError(f"placement option {name} must be a number > 0, got {value!r}")
    return float(value)


class PlacementSpace(SearchSpace):
    """One decision per co-location group of a model's ops: the device that runs it. Reward = -sqrt(simulated
    step time in s) (option ``reward``); a placement that does not fit a device's memory fails with the reason.

    The declared machine (defaults: a CPU and 4 GPUs) has devices named ``cpu...`` or ``gpu...``; a device runs
    an op in its profiled time (this machine, one thread) divided by the speed of its kind (``cpu_speed`` 1,
    ``gpu_speed`` 10) and holds ``cpu_memory_gb`` (64) or ``gpu_memory_gb`` (12); every ordered pair of devices
    has a link of ``bandwidth_gbs`` (12 GB/s, PCIe 3 x16) and ``latency_us`` (10). ``groups`` (16): how many
    groups the ops are cut into (`l2l.nas.placement.graph.group_ops`). ``profile``: a graph stored as JSON
    (`OpGraph.to_json`) to use instead of profiling the model here (``repeats`` 5 timed passes). ``measure``
    (false): time real training steps instead of simulating them, on devices ``thread0,thread1,...`` that are
    CPU threads of this process (`l2l.nas.placement.real`); the simulated time is kept in ``info``.
    """

    name = "placement"
    description = "Device placement of a real model's op groups; reward from the simulated training step time."
    failure_reward = -100.0  # a step of 10,000 s: worse than any placement that fits
    cost_metrics = ("step_time_ms",)

    def __init__(
        self,
        model: str = "gnmt",
        devices: str = "cpu,gpu0,gpu1,gpu2,gpu3",
        groups: int = 16,
        cpu_speed: float = 1.0,
        gpu_speed: float = 10.0,
        cpu_memory_gb: float = 64.0,
        gpu_memory_gb: float = 12.0,
        bandwidth_gbs: float = 12.0,
        latency_us: float = 10.0,
        reward: str = "neg_sqrt",
        backward_factor: float = 2.0,
        repeats: int = 5,
        profile: str = "",
        measure: bool = False,
    ) -> None:
        if model not in MODELS:
            raise SpaceError(f"unknown placement model {model!r}; known: {', '.join(MODELS)}")
        if reward not in REWARDS:
            raise SpaceError(f"unknown placement reward {reward!r}; known: {', '.join(REWARDS)}")
        names = [d.strip() for d in str(devices).split(",")]
        if "" in names:
            raise SpaceError(f"placement option devices has an empty name, got {devices!r}")
        if not names or len(set(names)) != len(names):
            raise SpaceError(f"placement option devices must name distinct devices, got {devices!r}")
        for d in names:
            if not d.startswith(DEVICE_KINDS):
                raise SpaceError(f"placement device {d!r} must start with one of: {', '.join(DEVICE_KINDS)}")
        if not isinstance(measure, bool):
            raise SpaceError(f"placement option measure must be true or false, got {measure!r}")
        if measure and not all(d.startswith("thread") for d in names):
            raise SpaceError(
                f"placement option measure: real steps run on CPU threads only (devices thread0,thread1,...), "
                f"got devices {','.join(names)}"
            )
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise SpaceError(f"placement option groups must be an integer >= 1, got {groups!r}")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise SpaceError(f"placement option repeats must be an integer >= 1, got {repeats!r}")
        speed = {"cpu": _positive("cpu_speed", cpu_speed), "gpu": _positive("gpu_speed", gpu_speed)}
        memory = {"cpu": _positive("cpu_memory_gb", cpu_memory_gb), "gpu": _positive("gpu_memory_gb", gpu_memory_gb)}
        bandwidth = _positive("bandwidth_gbs", bandwidth_gbs)
        if isinstance(latency_us, bool) or not isinstance(latency_us, int | float) or not 0 <= latency_us < math.inf:
            raise SpaceError(f"placement option latency_us must be a number >= 0, got {latency_us!r}")
        backward = float(backward_factor) if isinstance(backward_factor, int | float) else -1.0
        if isinstance(backward_factor, bool) or not 0 <= backward < math.inf:
            raise SpaceError(f"placement option backward_factor must be a number >= 0, got {backward_factor!r}")
        super().__init__(
            model=model,
            devices=",".join(names),
            groups=groups,
            cpu_speed=cpu_speed,
            gpu_speed=gpu_speed,
            cpu_memory_gb=cpu_memory_gb,
            gpu_memory_gb=gpu_memory_gb,
            bandwidth_gbs=bandwidth_gbs,
            latency_us=latency_us,
            reward=reward,
            backward_factor=backward_factor,
            repeats=repeats,
            profile=profile,
            **({"measure": True} if measure else {}),
        )
        kind = {d: "gpu" if d.startswith("gpu") else "cpu" for d in names}
        self.device_names = tuple(names)
        self.machine = Machine(
            tuple(Device(d, speed[kind[d]], memory[kind[d]] * 1e9) for d in names),
            bandwidth=bandwidth * 1e6,  # GB/s in bytes per ms
            latency_ms=float(latency_us) / 1000.0,
        )
        self.model, self.groups, self.reward_name = model, groups, reward
        self.backward_factor, self.repeats, self.profile, self.measure = backward, repeats, str(profile), measure
        self._graph: OpGraph | None = None
        self._grouping: tuple[int, ...] | None = None
        self._decisions = [Decision.categorical(f"group_{k}", names) for k in range(groups)]

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def exact_rewards(self) -> bool:
        return not self.measure  # the simulator is deterministic over one profiled graph; real steps are not

    def op_graph(self) -> OpGraph:
        """The model's profiled op graph (profiled on first use, or read from ``profile``)."""
        if self._graph is None:
            if self.profile:
                try:
                    data = json.loads(Path(self.profile).read_text())
                    if "ops" not in data and self.model in data:  # a file of graphs by model (the benchmark's)
                        data = data[self.model]
                    graph = OpGraph.from_json(data)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise SpaceError(
                        f"placement option profile: cannot read a graph from {self.profile!r}: {exc}"
                    ) from exc
                if graph.model != self.model:
                    raise SpaceError(
                        f"placement profile {self.profile!r} holds model {graph.model!r}, not {self.model!r}"
                    )
            else:
                graph = profiled(self.model, self.repeats, self.backward_factor)
            self._graph = graph
        return self._graph

    def grouping(self) -> tuple[int, ...]:
        """The group of every op."""
        if self._grouping is None:
            try:
                self._grouping = group_ops(self.op_graph(), self.groups)
            except PlacementError as exc:
                raise SpaceError(f"placement option groups: {exc}") from exc
        return self._grouping

    def shared_data(self) -> dict[str, Any]:
        return {"placement_graph": self.op_graph().to_json()}

    def use_shared_data(self, data: Mapping[str, Any]) -> None:
        if "placement_graph" in data:  # workers simulate the driver's measurement, not one of their own
            self._graph, self._grouping = OpGraph.from_json(data["placement_graph"]), None

    def pinned_data(self) -> dict[str, Any]:
        # the op timings (which the grouping of ops follows too) are this process's measurement: a rebuilt
        # space must reuse them, not profile again. Grouping them now refuses too many groups before any child.
        self.grouping()
        return self.shared_data()

    def use_pinned_data(self, data: Mapping[str, Any]) -> None:
        self.use_shared_data(data)

    def placement(self, spec: Spec) -> tuple[int, ...]:
        """The device index of every op under ``spec``."""
        return expand(self.grouping(), [self.device_names.index(str(spec[d.name])) for d in self._decisions])

    def schedule(self, spec: Spec, timeline: bool = False) -> Schedule:
        """The simulated training step of ``spec``'s placement."""
        return simulate(self.op_graph(), self.placement(spec), self.machine, timeline)

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        placement = self.placement(spec)
        graph = self.op_graph()
        devices = [str(spec[d.name]) for d in self._decisions]
        reason = out_of_memory(graph, placement, self.machine)
        if reason is not None:
            return Result.failed(reason, placement=devices)
        schedule = simulate(graph, placement, self.machine)
        step_ms = schedule.step_ms
        measured = {}
        if self.measure:  # a real step on this process's threads; the simulated time goes to info
            measured = {"simulated_ms": step_ms}
            step_ms = measure_step(build_model(self.model), graph, placement, len(self.device_names), repeats=3)
        return Result(
            reward=REWARDS[self.reward_name](step_ms / 1000.0),
            cost={"step_time_ms": step_ms},
            info={
                "placement": devices,
                "memory_mib": {d: round(m / 2**20, 2) for d, m in zip(self.device_names, schedule.memory, strict=True)},
                "transfers": schedule.transfers,
                "transfer_mib": round(schedule.transfer_bytes / 2**20, 3),
                **measured,
            },
        )

    def describe(self, spec: Spec) -> str:
        runs: list[tuple[int, int, str]] = []
        for k, d in enumerate(self._decisions):
            device = str(spec[d.name])
            if runs and runs[-1][2] == device:
                runs[-1] = (runs[-1][0], k, device)
            else:
                runs.append((k, k, device))
        return " ".join(f"g{a}={d}" if a == b else f"g{a}-{b}={d}" for a, b, d in runs)

    def graph(self, spec: Spec) -> dict[str, Any]:
        ops, grouping = self.op_graph().ops, self.grouping()
        cost = [0.0] * self.groups
        for op, g in zip(ops, grouping, strict=True):
            cost[g] += op.forward_ms
        nodes = [f"group {k} on {spec[d.name]} ({cost[k]:.2f} ms)" for k, d in enumerate(self._decisions)]
        edges = [
            [a, b, f"{nbytes / 1024:.0f} KiB"]
            for (a, b), nbytes in sorted(group_edges(self.op_graph(), grouping).items())
        ]
        return {"nodes": nodes, "edges": edges}
