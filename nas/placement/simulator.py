"""Event-driven simulation of one training step of a placed op graph on a declared machine.

The model (after Mirhoseini et al., 2017):

- Forward: an op starts when every input is on its device and the device is free; a device runs one op
  at a time, the one that became ready first (ties: the earlier op). It takes ``forward_ms / speed``.
- A tensor read on another device is sent once per destination device as soon as it is produced. The
  transfer takes ``bytes / bandwidth + latency`` on the link from its device to the destination; each
  ordered pair of devices has its own link, which carries one transfer at a time (first come, first served).
- Backward: in reverse, the op's backward (``backward_factor`` times its forward time) starts once the
  gradients of its output have arrived from every op that read it. Gradients computed on another device
  are summed there and sent back as one transfer of the output's size.
- The step ends when the last backward op ends; the optimizer update is not timed.
- Memory of a device: the parameters of its ops times ``1 + state_factor`` (3 by default: the gradient and
  Adam's two moments), plus every output produced on it and every tensor received by it (all kept for
  the backward pass). A placement that needs more than a device holds is out of memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from l2l.nas.placement.graph import OpGraph, PlacementError


@dataclass(frozen=True)
class Device:
    """A device of the declared machine: its speed relative to the profiling core and its memory."""

    name: str
    speed: float
    memory_bytes: float


@dataclass(frozen=True)
class Machine:
    """Devices joined pairwise by links of one bandwidth (bytes per ms) and latency (ms)."""

    devices: tuple[Device, ...]
    bandwidth: float
    latency_ms: float
    state_factor: float = 3.0

    def __post_init__(self) -> None:
        if not self.devices:
            raise PlacementError("a machine needs at least one device")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise PlacementError(f"device names repeat: {names}")
        for d in self.devices:
            if d.speed <= 0 or d.memory_bytes <= 0:
                raise PlacementError(
                    f"device {d.name!r} needs speed > 0 and memory > 0, got {d.speed}, {d.memory_bytes}"
                )
        if self.bandwidth <= 0 or self.latency_ms < 0:
            raise PlacementError(f"links need bandwidth > 0 and latency >= 0, got {self.bandwidth}, {self.latency_ms}")

    def transfer_ms(self, nbytes: int) -> float:
        """How long one transfer of ``nbytes`` occupies a link."""
        return nbytes / self.bandwidth + self.latency_ms


@dataclass(frozen=True)
class Interval:
    """One task of the simulated step: an op's forward or backward on a device, or a transfer on a link."""

    resource: str  # "gpu0", or "gpu0->gpu1" for a link
    label: str  # "fwd op", "bwd op", "act op", "grad op"
    op: int
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    """The simulated step: its time in ms, each device's peak memory in bytes, and the timeline."""

    step_ms: float
    memory: tuple[int, ...]
    timeline: tuple[Interval, ...]
    transfers: int
    transfer_bytes: int


def memory_use(graph: OpGraph, placement: Sequence[int], machine: Machine) -> tuple[int, ...]:
    """Bytes each device holds at the end of the forward pass (parameters with their state, activations)."""
    use = [0.0] * len(machine.devices)
    for i, op in enumerate(graph.ops):
        d = placement[i]
        use[d] += op.param_bytes * (1.0 + machine.state_factor) + op.out_bytes
        for e in {placement[j] for j in graph.consumers(i)} - {d}:
            use[e] += op.out_bytes
    return tuple(int(u) for u in use)


def out_of_memory(graph: OpGraph, placement: Sequence[int], machine: Machine) -> str | None:
    """Why the placement does not fit (the first device short of memory), or None when it fits."""
    for device, used in zip(machine.devices, memory_use(graph, placement, machine), strict=True):
        if used > device.memory_bytes:
            need, have = used / 2**20, device.memory_bytes / 2**20
            return f"out of memory on {device.name}: needs {need:.1f} MiB, has {have:.1f} MiB"
    return None


def simulate(graph: OpGraph, placement: Sequence[int], machine: Machine, timeline: bool = False) -> Schedule:
    """Simulate one training step of ``graph`` with op i on device ``placement[i]``.

    Out-of-memory placements are simulated too; call `out_of_memory` to refuse them. ``timeline``: keep
    every task's interval (for plots), else only the step time and the counts."""
    n, devices = len(graph.ops), machine.devices
    if len(placement) != n:
        raise PlacementError(f"placement has {len(placement)} entries for {n} ops")
    for d in placement:
        if not 0 <= d < len(devices):
            raise PlacementError(f"device index {d} outside 0..{len(devices) - 1}")
    # tasks: [resource, duration, priority, label, op]; dependents and counts of unmet dependencies
    resources: list[str] = []
    duration: list[float] = []
    priority: list[int] = []
    label: list[str] = []
    task_op: list[int] = []
    after: list[list[int]] = []

    def task(resource: str, ms: float, prio: int, what: str, op: int) -> int:
        resources.append(resource)
        duration.append(ms)
        priority.append(prio)
        label.append(what)
        task_op.append(op)
        after.append([])
        return len(resources) - 1

    names = [d.name for d in devices]
    fwd = [
        task(names[placement[i]], op.forward_ms / devices[placement[i]].speed, i, "fwd", i)
        for i, op in enumerate(graph.ops)
    ]
    bwd = [
        task(
            names[placement[i]],
            graph.backward_factor * op.forward_ms / devices[placement[i]].speed,
            2 * n - 1 - i,
            "bwd",
            i,
        )
        for i, op in enumerate(graph.ops)
    ]
    nbytes = 0
    for i, op in enumerate(graph.ops):
        here = placement[i]
        acts: dict[int, int] = {}  # destination device -> the transfer of this output there
        grads: dict[int, int] = {}  # that device -> the transfer of the gradients summed there back here
        for j in graph.consumers(i):
            d = placement[j]
            if d == here:
                after[fwd[i]].append(fwd[j])
                after[bwd[j]].append(bwd[i])
                continue
            if d not in acts:
                ms = machine.transfer_ms(op.out_bytes)
                acts[d] = task(f"{names[here]}->{names[d]}", ms, i, "act", i)
                grads[d] = task(f"{names[d]}->{names[here]}", ms, 2 * n - 1 - i, "grad", i)
                after[fwd[i]].append(acts[d])
                after[grads[d]].append(bwd[i])
                nbytes += 2 * op.out_bytes
            after[acts[d]].append(fwd[j])
            after[bwd[j]].append(grads[d])
        after[fwd[i]].append(bwd[i])
    waiting = [0] * len(resources)
    for outs in after:
        for t in outs:
            waiting[t] += 1

    queues: dict[str, list[tuple[float, int, int]]] = {}
    busy: set[str] = set()
    events: list[tuple[float, int]] = []  # (end time, task)
    start = [0.0] * len(resources)
    for t, w in enumerate(waiting):
        if w == 0:
            heapq.heappush(queues.setdefault(resources[t], []), (0.0, priority[t], t))
    now, finished = 0.0, 0
    while True:
        for r, queue in queues.items():
            if r not in busy and queue:
                _, _, t = heapq.heappop(queue)
                start[t] = now
                busy.add(r)
                heapq.heappush(events, (now + duration[t], t))
        if not events:
            break
        now = events[0][0]
        while events and events[0][0] == now:
            _, t = heapq.heappop(events)
            finished += 1
            busy.discard(resources[t])
            for u in after[t]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    heapq.heappush(queues.setdefault(resources[u], []), (now, priority[u], u))
    if finished != len(resources):
        raise PlacementError(f"simulation stalled with {len(resources) - finished} tasks left (a cycle in the graph?)")
    intervals = (
        tuple(
            Interval(
                resources[t], f"{label[t]} {graph.ops[task_op[t]].name}", task_op[t], start[t], start[t] + duration[t]
            )
            for t in range(len(resources))
        )
        if timeline
        else ()
    )
    return Schedule(now, memory_use(graph, placement, machine), intervals, len(resources) - 2 * n, nbytes)
