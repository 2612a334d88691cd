"""Searched recurrent cells run in a standard recurrent loop: the ENAS cell and Zoph & Le's tree cell.

A cell splits its work into the part that reads only the input, done for all time steps at once
(``project``), and the recurrence (``step``). `CellRNN` runs the loop and has the shape contract of
`nn.LSTM`: ``(x (T, B, E), state) -> (out (T, B, H), state)``.

ENAS (Pham et al. 2018): node 1 reads x_t and h_{t-1}; node j > 1 reads one earlier node i. Each
node is a highway layer, c = sigmoid(W_c z), h_j = c * f_j(W_h z) + (1 - c) * h_i, with f_j one of
tanh, ReLU, identity, sigmoid. The cell's output (and next state) is the mean of the nodes no other
node reads.

Zoph & Le (2017), base 8: eight leaves compute f(W_l x_t (+ or *) U_l h_{t-1}); a binary tree of
seven nodes joins pairs with (+ or *) and an activation; the root is h_t. The memory cell: c_{t-1}
is joined into one chosen tree node's output (add or multiply, then an activation), and the value of
another chosen node before its activation becomes c_t.

The recurrent projections can be low rank (`l2l.nas.lowrank`) or hashed sparse layers (`l2l.nas.hashed`,
evaluating a fraction of their outputs per step): the controller's choices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from l2l.nas.charlm import Recurrent
from l2l.nas.genotypes import (
    RNN_ACTIVATIONS,
    RNN_COMBINE,
    TREE_CHILDREN,
    TREE_LEAVES,
    TREE_NODES,
    ENASNode,
    TreeSpec,
    enas_loose_ends,
)
from l2l.nas.lowrank import linear

# one table each: the search space offers the names, the cells look the functions up
ACTIVATION_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}
COMBINE_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
}
ACTIVATIONS, COMBINE = RNN_ACTIVATIONS, RNN_COMBINE  # the names the space offers (nas/genotypes.py: no torch)


def projection(n_in: int, n_out: int, rank: str | int | None, active: float, bias: bool) -> nn.Module:
    """A recurrent projection: dense, low rank, or hashed sparse (``active`` < 1; it has a bias)."""
    if active < 1.0:
        from l2l.nas.hashed import HashedLinear

        return HashedLinear(n_in, n_out, active=active)
    return linear(n_in, n_out, rank, bias=bias)


def activate(name: str, x: torch.Tensor) -> torch.Tensor:
    """A node's activation by its token name, so specs stay plain strings."""
    if name not in ACTIVATION_FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATION_FUNCTIONS[name](x)


def combine(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A tree node's join of its two inputs by token name."""
    if name not in COMBINE_FUNCTIONS:
        raise ValueError(f"unknown combination {name!r}; known: {', '.join(COMBINE)}")
    return COMBINE_FUNCTIONS[name](a, b)


class Cell(nn.Module):
    """A recurrent cell: ``project`` reads the inputs of all steps at once, ``step`` does the recurrence."""

    hidden: int

    def initial_state(self, batch: int, device: torch.device) -> Any:
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, xp: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One time step from the projected input ``xp`` (B, ...): (output (B, H), next state)."""
        raise NotImplementedError


class CellRNN(Recurrent):
    """Runs ``cell`` over time: inputs projected once for all steps, then the recurrence step by step."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell
        self.hidden = cell.hidden

    def initial_state(self, batch: int, device: torch.device) -> Any:
        return self.cell.initial_state(batch, device)

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        projected = self.cell.project(x)
        outs = []
        for t in range(x.shape[0]):
            h, state = self.cell.step(projected[t], state)
            outs.append(h)
        return torch.stack(outs), state


class LSTMCell(Cell):
    """The textbook LSTM as a cell of `CellRNN` (gate order i, f, g, o as `nn.LSTM`), to test the loop."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w_x = nn.Linear(inputs, 4 * hidden)
        self.w_h = nn.Linear(hidden, 4 * hidden)

    def initial_state(self, batch: int, device: torch.device) -> Any:
        h = torch.zeros(1, batch, self.hidden, device=device)
        return (h, h.clone())

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_x(x)  # type: ignore[no-any-return]

    def step(self, xp: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        h, c = state[0][0], state[1][0]
        i, f, g, o = (xp + self.w_h(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h[None], c[None])


class ENASCell(Cell):
    """The ENAS recurrent cell of ``len(nodes)`` nodes on ``hidden`` units."""

    def __init__(
        self,
        nodes: Sequence[ENASNode],
        inputs: int,
        hidden: int,
        rank: str | int | None = None,
        active: float = 1.0,
    ) -> None:
        super().__init__()
        for j, node in enumerate(nodes):
            if j > 0 and not 0 <= node.prev < j:
                raise ValueError(f"node {j} reads node {node.prev}; only nodes 0..{j - 1} come before it")
            activate(node.act, torch.zeros(1))  # a bad name fails here, not in the middle of training
        self.nodes, self.hidden = list(nodes), hidden
        self.w_x = nn.Linear(inputs, 2 * hidden)
        self.w_h = projection(hidden, 2 * hidden, rank, active, bias=False)
        self.w_nodes = nn.ModuleList(projection(hidden, 2 * hidden, rank, active, True) for _ in self.nodes[1:])
        self.out = enas_loose_ends(self.nodes)

    def initial_state(self, batch: int, device: torch.device) -> Any:
        return torch.zeros(batch, self.hidden, device=device)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_x(x)  # type: ignore[no-any-return]

    def _highway(self, z: torch.Tensor, prev: torch.Tensor, act: str) -> torch.Tensor:
        c, h = z.chunk(2, dim=-1)
        # c * f(h) + (1 - c) * prev in one operation, not four: 15% less CPU time for a weight-sharing search
        return torch.lerp(prev, activate(act, h), torch.sigmoid(c))

    def step(self, xp: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        h_prev = state
        states = [self._highway(xp + self.w_h(h_prev), h_prev, self.nodes[0].act)]
        for node, w in zip(self.nodes[1:], self.w_nodes, strict=True):
            states.append(self._highway(w(states[node.prev]), states[node.prev], node.act))
        h = torch.stack([states[j] for j in self.out]).mean(0)
        return h, h


class TreeCell(Cell):
    """Zoph & Le's base-8 tree cell with the memory cell (state ``(h, c)``)."""

    def __init__(
        self, spec: TreeSpec, inputs: int, hidden: int, rank: str | int | None = None, active: float = 1.0
    ) -> None:
        super().__init__()
        if len(spec.combine) != TREE_NODES or len(spec.act) != TREE_NODES:
            raise ValueError(f"a base-8 tree has {TREE_NODES} nodes; got {len(spec.combine)} combinations")
        if not (0 <= spec.inject_at < TREE_NODES and 0 <= spec.cell_from < TREE_NODES):
            raise ValueError(f"tree nodes are 0..{TREE_NODES - 1}; got {spec.inject_at} and {spec.cell_from}")
        for name in (*spec.act, spec.inject_act):
            activate(name, torch.zeros(1))
        for name in (*spec.combine, spec.inject_combine):
            combine(name, torch.zeros(1), torch.zeros(1))
        self.spec, self.hidden = spec, hidden
        self.w_x = nn.Linear(inputs, TREE_LEAVES * hidden)
        self.w_h = projection(hidden, TREE_LEAVES * hidden, rank, active, bias=False)

    def initial_state(self, batch: int, device: torch.device) -> Any:
        h = torch.zeros(batch, self.hidden, device=device)
        return (h, h.clone())

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_x(x)  # type: ignore[no-any-return]

    def step(self, xp: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        h_prev, c_prev = state
        s = self.spec
        xs, hs = xp.chunk(TREE_LEAVES, dim=-1), self.w_h(h_prev).chunk(TREE_LEAVES, dim=-1)
        out: list[torch.Tensor] = []
        c_new = c_prev
        for k in range(TREE_NODES):
            a, b = (xs[k], hs[k]) if k < TREE_LEAVES else (out[TREE_CHILDREN[k][0]], out[TREE_CHILDREN[k][1]])
            pre = combine(s.combine[k], a, b)
            if k == s.cell_from:
                c_new = pre
            value = activate(s.act[k], pre)
            if k == s.inject_at:
                value = activate(s.inject_act, combine(s.inject_combine, value, c_prev))
            out.append(value)
        return out[-1], (out[-1], c_new)
