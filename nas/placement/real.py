"""Real training steps of a placed model on this machine, with CPU threads as the devices.

`measure_step` runs one training step of a traced model op by op: device k is a Python thread (torch on one
intra-op thread, ops release the GIL) that runs the forward and backward of its ops in the order the
simulator scheduled them, waiting for the ops of the other devices it depends on. Every op is differentiated
on its own (its inputs are detached leaves; its backward gets the gradients its readers computed), so the
backward pass runs on the devices the placement says, not on autograd's single CPU thread. A tensor handed
to another thread is not copied (the devices share memory): compare with a simulated machine whose links
have latency only (`thread_machine`).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx

from l2l.nas.placement.graph import OpGraph, PlacementError
from l2l.nas.placement.models import PlacementModel
from l2l.nas.placement.simulator import Device, Machine, simulate


def thread_machine(threads: int, latency_ms: float = 0.02) -> Machine:
    """The simulated twin of `measure_step`'s devices: ``threads`` devices of this machine's core speed, links
    of (practically) unlimited bandwidth and ``latency_ms`` (a hand-off between threads)."""
    return Machine(
        tuple(Device(f"thread{k}", 1.0, 1e12) for k in range(threads)), bandwidth=1e12, latency_ms=latency_ms
    )


def _leaves(value: Any) -> Any:
    """``value`` with every tensor detached into a leaf that collects its gradient."""
    if isinstance(value, torch.Tensor):
        return value.detach().requires_grad_(value.requires_grad or value.is_floating_point())
    if isinstance(value, tuple | list):
        return type(value)(_leaves(v) for v in value)
    return value


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _tensors(v)]
    return []


class _Step:
    """One training step split into per-op forward and backward tasks."""

    def __init__(self, traced: fx.GraphModule, nodes: list[fx.Node], inputs: Sequence[torch.Tensor]) -> None:
        self.traced, self.nodes, self.inputs = traced, nodes, list(inputs)
        self.index = {n: i for i, n in enumerate(nodes)}
        self.readers: list[list[int]] = [[] for _ in nodes]
        for i, n in enumerate(nodes):
            for m in n.all_input_nodes:
                self.readers[self.index[m]].append(i)
        self.out: list[Any] = [None] * len(nodes)
        self.seen: list[dict[int, Any]] = [{} for _ in nodes]  # op -> its leaf copies of each input, by producer

    def forward(self, i: int) -> None:
        n = self.nodes[i]
        copies = {self.index[m]: _leaves(self.out[self.index[m]]) for m in n.all_input_nodes}
        self.seen[i] = copies
        args = fx.node.map_arg(n.args, lambda m: copies[self.index[m]])
        kwargs = fx.node.map_arg(n.kwargs, lambda m: copies[self.index[m]])
        if n.op == "placeholder":
            out: Any = self.inputs[sum(1 for m in self.nodes[:i] if m.op == "placeholder")]
        elif n.op == "get_attr":
            out = self.traced.get_parameter(str(n.target))
        elif n.op == "call_module":
            out = self.traced.get_submodule(str(n.target))(*args, **kwargs)
        elif n.op == "call_function":
            out = n.target(*args, **kwargs)  # type: ignore[operator]
        else:
            out = getattr(args[0], str(n.target))(*args[1:], **kwargs)
        self.out[i] = out

    def backward(self, i: int) -> None:
        outs = _tensors(self.out[i])
        if not self.readers[i]:  # the loss
            grads: list[torch.Tensor | None] = [torch.ones_like(t) for t in outs]
        else:
            grads = [None] * len(outs)
            for j in self.readers[i]:
                for k, leaf in enumerate(_tensors(self.seen[j][i])):
                    sum_so_far = grads[k]
                    if leaf.grad is not None:
                        grads[k] = leaf.grad if sum_so_far is None else sum_so_far + leaf.grad
        pairs = [(t, g) for t, g in zip(outs, grads, strict=True) if g is not None and t.requires_grad]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])


def measure_step(
    model: PlacementModel, graph: OpGraph, placement: Sequence[int], threads: int, repeats: int = 5
) -> float:
    """Median wall time (ms) of ``repeats`` real training steps of ``model`` with op i on thread ``placement[i]``
    (after one untimed step), each thread running its ops in the order `simulate` scheduled them."""
    if repeats < 1:
        raise PlacementError(f"repeats must be >= 1, got {repeats}")
    traced = fx.symbolic_trace(model.module)
    nodes = [n for n in traced.graph.nodes if n.op != "output"]
    if [n.name for n in nodes] != [op.name for op in graph.ops]:
        raise PlacementError(f"graph of {graph.model!r} does not match the traced model {model.name!r}")
    schedule = simulate(graph, placement, thread_machine(threads), timeline=True)
    plan: list[list[tuple[str, int]]] = [[] for _ in range(threads)]
    for task in sorted(schedule.timeline, key=lambda t: (t.start, t.end)):
        if "->" not in task.resource:
            plan[int(task.resource.removeprefix("thread"))].append((task.label.split()[0], task.op))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    times = []
    try:
        for _ in range(repeats + 1):
            model.module.zero_grad(set_to_none=True)
            times.append(_run(_Step(traced, nodes, model.inputs), plan, graph))
    finally:
        torch.set_num_threads(before)
    return statistics.median(times[1:])


def _run(step: _Step, plan: list[list[tuple[str, int]]], graph: OpGraph) -> float:
    done = {(kind, i): threading.Event() for kind in ("fwd", "bwd") for i in range(len(graph.ops))}
    errors: list[BaseException] = []

    def device(tasks: list[tuple[str, int]]) -> None:
        try:
            for kind, i in tasks:
                waits = graph.ops[i].inputs if kind == "fwd" else graph.consumers(i)
                for j in waits:
                    done[(kind, j)].wait()
                (step.forward if kind == "fwd" else step.backward)(i)
                done[(kind, i)].set()
        except BaseException as exc:  # a failed op must not leave the other threads waiting forever
            errors.append(exc)
            for event in done.values():
                event.set()

    workers = [threading.Thread(target=device, args=(tasks,)) for tasks in plan]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return 1000.0 * (time.perf_counter() - start)
