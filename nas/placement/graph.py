"""Op graphs of real models: traced with `torch.fx`, each op's cost measured on this machine, ops grouped.

`profile_model` traces a model's training loss into one op per fx node and runs it `WARMUP` times to warm up, then
``repeats`` more times timing every op on its real inputs (one torch thread), keeping each op's median.
Times are the CPU time of the thread running the op, so other processes taking turns on the same cores do
not inflate them (they still slow the op down when they share its core: profiles taken minutes apart on a
busy machine differed by up to 1.7x; `op_timings` gives the raw timings of every pass).
Each op records the bytes of its output, the bytes of the parameters it reads and that median forward
time; the backward pass of an op is taken to cost ``backward_factor`` (2 by default: the gradients with
respect to both the inputs and the weights each cost about one forward pass) times its forward time.

`group_ops` is the grouping heuristic: ops that read the same parameters are one co-location unit (an
LSTM cell's time steps, the softmax applied at every decoder step), as TensorFlow co-locates the readers
of a variable; the units, in the order their first op runs, are cut into ``groups`` contiguous chunks of
about equal forward time. The placement space then chooses one device per chunk.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import fx

from l2l.nas.placement.models import PlacementModel

WARMUP = 3  # untimed passes before the timed ones


class PlacementError(ValueError):
    """A graph, grouping, machine or placement is malformed; the message names what."""


@dataclass(frozen=True)
class Op:
    """One op of a traced model: what it is, what it reads, what it produces and what it costs."""

    name: str
    kind: str  # "call_module:LSTMCell", "call_function:cat", "placeholder", ...
    scope: str  # the module it belongs to ("encoder.2"), "" at the top level
    inputs: tuple[int, ...]
    out_bytes: int
    param_bytes: int  # bytes of the parameters it is the first to read (so a model's parameters count once)
    params: tuple[str, ...]  # names of every parameter it reads
    forward_ms: float


@dataclass(frozen=True)
class OpGraph:
    """A model's ops in topological order with their measured costs; JSON round-trips through `to_json`."""

    model: str
    ops: tuple[Op, ...]
    backward_factor: float = 2.0
    repeats: int = 5
    _consumers: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        consumers: list[list[int]] = [[] for _ in self.ops]
        for i, op in enumerate(self.ops):
            for j in op.inputs:
                if not 0 <= j < i:
                    raise PlacementError(f"op {i} ({op.name}) reads op {j}, which does not come before it")
                consumers[j].append(i)
        if self.backward_factor < 0:
            raise PlacementError(f"backward_factor must be >= 0, got {self.backward_factor}")
        object.__setattr__(self, "_consumers", tuple(tuple(c) for c in consumers))

    def consumers(self, i: int) -> tuple[int, ...]:
        """The ops that read op ``i``'s output."""
        return self._consumers[i]

    @cached_property
    def forward_ms(self) -> float:
        """The forward time of the whole model on the profiling machine (ops one after another)."""
        return sum(op.forward_ms for op in self.ops)

    @property
    def param_bytes(self) -> int:
        """Bytes of all the model's parameters."""
        return sum(op.param_bytes for op in self.ops)

    def to_json(self) -> dict[str, Any]:
        """A plain dict `from_json` turns back into an equal graph."""
        return {
            "model": self.model,
            "backward_factor": self.backward_factor,
            "repeats": self.repeats,
            "ops": [
                [
                    op.name,
                    op.kind,
                    op.scope,
                    list(op.inputs),
                    op.out_bytes,
                    op.param_bytes,
                    list(op.params),
                    op.forward_ms,
                ]
                for op in self.ops
            ],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> OpGraph:
        """Rebuild a graph stored with `to_json`."""
        ops = tuple(
            Op(
                str(n),
                str(k),
                str(s),
                tuple(int(i) for i in ins),
                int(ob),
                int(pb),
                tuple(str(p) for p in ps),
                float(ms),
            )
            for n, k, s, ins, ob, pb, ps, ms in data["ops"]
        )
        return OpGraph(str(data["model"]), ops, float(data["backward_factor"]), int(data.get("repeats", 0)))


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0


class _Profiler(fx.Interpreter):
    """Runs a traced model, timing every op on its real inputs; each run adds one timing per op."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.times: dict[fx.Node, list[float]] = {}
        self.out_bytes: dict[fx.Node, int] = {}

    def run_node(self, n: fx.Node) -> Any:
        start = time.thread_time()
        out = super().run_node(n)
        elapsed = time.thread_time() - start
        self.times.setdefault(n, []).append(0.0 if n.op in ("placeholder", "get_attr", "output") else elapsed)
        self.out_bytes[n] = _tensor_bytes(out)
        return out


def _scope(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    paths = [str(v[0]) if isinstance(v, tuple) else str(k) for k, v in stack.items()]
    return paths[-1] if paths else ""


def _kind(node: fx.Node, module: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"call_module:{type(module.get_submodule(str(node.target))).__name__}"
    if node.op in ("call_function", "call_method"):
        target = node.target
        return f"{node.op}:{getattr(target, '__name__', str(target))}"
    return node.op


def _params_read(node: fx.Node, module: fx.GraphModule) -> dict[str, int]:
    if node.op == "call_module":
        sub = module.get_submodule(str(node.target))
        return {f"{node.target}.{n}": p.numel() * p.element_size() for n, p in sub.named_parameters()}
    if node.op == "get_attr":
        value = module
        for part in str(node.target).split("."):
            value = getattr(value, part)
        if isinstance(value, torch.nn.Parameter):
            return {str(node.target): value.numel() * value.element_size()}
    return {}


def _profiled(traced: fx.GraphModule, inputs: tuple[torch.Tensor, ...], passes: int) -> _Profiler:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(WARMUP):  # first calls allocate memory and pick kernels
            _Profiler(traced).run(*inputs)
        profiler = _Profiler(traced)
        for _ in range(passes):  # whole passes, so a burst of load on a shared machine hits few timings of an op
            profiler.run(*inputs)
    finally:
        torch.set_num_threads(before)
    return profiler


def op_timings(model: PlacementModel, passes: int) -> dict[str, list[float]]:
    """Every op's forward time (ms) in each of ``passes`` timed passes, by op name: the raw data of a profile."""
    profiler = _profiled(fx.symbolic_trace(model.module), model.inputs, passes)
    return {n.name: [1000.0 * t for t in times] for n, times in profiler.times.items() if n.op != "output"}


def profile_model(model: PlacementModel, repeats: int = 5, backward_factor: float = 2.0) -> OpGraph:
    """Trace ``model`` and measure every op on this machine (one thread, median over ``repeats`` passes)."""
    if repeats < 1:
        raise PlacementError(f"repeats must be >= 1, got {repeats}")
    traced = fx.symbolic_trace(model.module)
    profiler = _profiled(traced, model.inputs, repeats)
    nodes = [n for n in traced.graph.nodes if n.op != "output"]
    index = {n: i for i, n in enumerate(nodes)}
    seen: set[str] = set()
    ops = []
    for n in nodes:
        params = _params_read(n, traced)
        new = [p for p in params if p not in seen]
        seen.update(new)
        ops.append(
            Op(
                name=n.name,
                kind=_kind(n, traced),
                scope=_scope(n),
                inputs=tuple(index[m] for m in n.all_input_nodes),
                out_bytes=profiler.out_bytes[n],
                param_bytes=sum(params[p] for p in new),
                params=tuple(params),
                forward_ms=1000.0 * statistics.median(profiler.times[n]),
            )
        )
    return OpGraph(model.name, tuple(ops), backward_factor, repeats)


def colocation_units(graph: OpGraph) -> list[list[int]]:
    """Ops that read a common parameter, as one unit each (the rest alone), in the order their first op runs."""
    parent = list(range(len(graph.ops)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, op in enumerate(graph.ops):
        for p in op.params:
            if p in owner:
                parent[root(i)] = root(owner[p])
            else:
                owner[p] = i
    units: dict[int, list[int]] = {}
    for i in range(len(graph.ops)):
        units.setdefault(root(i), []).append(i)
    return sorted(units.values(), key=lambda u: u[0])


def group_ops(graph: OpGraph, groups: int) -> tuple[int, ...]:
    """The group of every op: co-location units cut into ``groups`` contiguous chunks of about equal cost."""
    units = colocation_units(graph)
    if groups < 1:
        raise PlacementError(f"groups must be >= 1, got {groups}")
    if len(units) < groups:
        raise PlacementError(f"model {graph.model!r} has {len(units)} co-location units, fewer than groups={groups}")
    costs = [sum(graph.ops[i].forward_ms for i in u) for u in units]
    target = sum(costs) / groups or 1.0
    out = [0] * len(graph.ops)
    done, chunk = 0.0, -1
    for k, (unit, cost) in enumerate(zip(units, costs, strict=True)):
        want = min(int((done + cost / 2) / target), groups - 1)  # the chunk the unit's middle falls in
        left = len(units) - k - 1
        chunk = max(min(max(chunk, want), chunk + 1), groups - 1 - left)  # no chunk skipped or left empty
        for i in unit:
            out[i] = chunk
        done += cost
    return tuple(out)


def group_edges(graph: OpGraph, grouping: Sequence[int]) -> dict[tuple[int, int], int]:
    """Bytes flowing from group a to group b != a in one forward pass (each tensor counted once per group)."""
    edges: dict[tuple[int, int], int] = {}
    for i, op in enumerate(graph.ops):
        for b in sorted({grouping[j] for j in graph.consumers(i)} - {grouping[i]}):
            edges[(grouping[i], b)] = edges.get((grouping[i], b), 0) + op.out_bytes
    return edges


def iter_scopes(graph: OpGraph) -> Iterator[str]:
    """The distinct module scopes of the graph, in order of first appearance."""
    seen: set[str] = set()
    for op in graph.ops:
        if op.scope not in seen:
            seen.add(op.scope)
            yield op.scope
