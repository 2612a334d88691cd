"""`micro`: the NASNet / ENAS cell space: a normal and a reduction cell of B nodes, stacked N times."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SpaceError, Spec
from l2l.search_spaces.trained import DatasetSpace, train_and_measure

CELL_TYPES = ("normal", "reduce")


class MicroSpace(DatasetSpace):
    """Per cell type (normal, reduction) and per node b = 2..B+1: two inputs among the earlier nodes
    (0 and 1 are the two previous cells' outputs) and an op for each; the node adds the two results.
    The cell outputs the concatenation of its unused nodes.

    Options: ``dataset`` (mnist1d), ``ops`` (``enas``: sep conv 3x3 and 5x5, avg and max pool 3x3,
    identity; ``nasnet``: the thirteen of NASNet), ``nodes`` B (5), ``cells`` N normal cells per stage
    (1), ``channels`` (8), ``reductions`` (2), ``epochs`` (5), ``batch_size`` (64), ``lr`` (Adam, 0.003).
    """

    name = "micro"
    budget_keys = ("epochs",)
    description = "NASNet/ENAS micro cells (normal + reduction cell of B nodes, stacked), MNIST-1D by default."

    def __init__(
        self,
        dataset: str = "mnist1d",
        ops: str = "enas",
        nodes: int = 5,
        cells: int = 1,
        channels: int = 8,
        reductions: int = 2,
        epochs: int = 5,
        batch_size: int = 64,
        lr: float = 0.003,
    ) -> None:
        from l2l.nas.genotypes import OP_SETS

        if ops not in OP_SETS:
            raise SpaceError(f"unknown micro op set {ops!r}; known: {', '.join(OP_SETS)}")
        if min(nodes, cells, channels, epochs, batch_size) < 1 or reductions < 0 or not lr > 0:
            raise SpaceError(
                "micro needs nodes, cells, channels, epochs, batch_size >= 1, reductions >= 0 and lr > 0; got "
                f"{nodes}, {cells}, {channels}, {epochs}, {batch_size}, {reductions}, {lr}"
            )
        super().__init__(
            dataset=dataset,
            ops=ops,
            nodes=nodes,
            cells=cells,
            channels=channels,
            reductions=reductions,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
        )
        self.dataset, self.op_set, self.n_nodes, self.n_cells = dataset, OP_SETS[ops], nodes, cells
        self.channels, self.reductions = channels, reductions
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        # without reductions the network has no reduction cell: its choices would change nothing
        self.kinds = CELL_TYPES if reductions else CELL_TYPES[:1]
        self._decisions: list[Decision] = []
        for kind in self.kinds:
            for b in range(2, nodes + 2):
                for side in ("a", "b"):
                    self._decisions.append(Decision.categorical(f"{kind}_n{b}_{side}", range(b)))
                    self._decisions.append(Decision.categorical(f"{kind}_n{b}_op_{side}", self.op_set))

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def cell(self, spec: Spec, kind: str) -> list[Any]:
        """The `l2l.nas.micro.MicroNode` list of the ``kind`` ("normal" or "reduce") cell of ``spec``."""
        from l2l.nas.genotypes import MicroNode

        nodes = []
        for b in range(2, self.n_nodes + 2):
            p = f"{kind}_n{b}_"
            a, b_in = int(str(spec[p + "a"])), int(str(spec[p + "b"]))
            nodes.append(MicroNode(a, str(spec[p + "op_a"]), b_in, str(spec[p + "op_b"])))
        return nodes

    def describe(self, spec: Spec) -> str:
        parts = []
        for kind in self.kinds:
            nodes = " ".join(
                f"n{b}=[{n.op_a}({n.a})+{n.op_b}({n.b})]" for b, n in enumerate(self.cell(spec, kind), start=2)
            )
            parts.append(f"{kind}: {nodes}")
        return " | ".join(parts)

    def graph(self, spec: Spec) -> dict[str, Any]:
        from l2l.nas.genotypes import loose_ends

        labels: list[str] = []
        edges: list[list[Any]] = []
        for kind in self.kinds:
            base = len(labels)
            nodes = self.cell(spec, kind)
            labels += [f"{kind}: c[k-2]", f"{kind}: c[k-1]"] + [f"n{b}" for b in range(2, len(nodes) + 2)]
            labels.append(f"{kind} out")
            for b, n in enumerate(nodes, start=2):
                edges += [[base + n.a, base + b, n.op_a], [base + n.b, base + b, n.op_b]]
            edges += [[base + i, base + len(nodes) + 2, "concat"] for i in loose_ends(nodes)]
        return {"nodes": labels, "edges": edges}

    def build(self, spec: Spec, seed: int, op_maker: Any = None) -> Any:
        """The network of ``spec`` with the initial weights of ``seed``, and one example input; ``op_maker``:
        how each cell makes its ops (`l2l.nas.micro.MicroNet`), new ones when None."""
        import torch

        from l2l.nas.data import load_dataset
        from l2l.nas.genotypes import signal_shape
        from l2l.nas.micro import MicroNet

        data = load_dataset(self.dataset)
        shape = signal_shape(data.input_shape, self.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MicroNet(
                self.cell(spec, "normal"),
                self.cell(spec, "reduce") if self.reductions else [],
                shape,
                data.n_classes,
                channels=self.channels,
                cells=self.n_cells,
                reductions=self.reductions,
                op_maker=op_maker,
            )
        return model, data.val.x[:1]

    def shared_network(self) -> Any:
        """Weight sharing: in each cell, the op at each node's input slot keeps one set of weights per op
        and stride, whichever earlier node it reads (ENAS's micro search). A weight that reads a cell's
        output (the next cells' input convolutions, the classifier) has a column block for every node of
        that cell and reads the blocks of the nodes that make the output (its loose ends), as ENAS
        gathers them (`l2l.nas.shared.Slot`)."""
        from l2l.search_spaces.sharing import ClassifierNetwork

        return ClassifierNetwork(
            self,
            self.dataset,
            lambda spec, seed: self.build(spec, seed)[0],
            self._shared_key,
            [d.name for d in self.decisions()],
            self._sharing_builder,
        )

    def _sharing_builder(self) -> Any:
        """Networks for one store of shared weights: where every op at every cell's input slot was built before
        (the same op, stride and slot), the network takes those modules and builds the rest (stem, the cells'
        input convolutions and the classifier, whose weights are slots of the shared ones), else it is built
        in full."""
        ops: dict[tuple[int, int, str, int], Any] = {}  # (cell, slot, op, stride) -> its module

        def maker(cell: int) -> Any:
            def take(slot: int, op: str, c: int, stride: int, dims: int) -> Any:
                if (cell, slot, op, stride) not in ops:
                    raise _Unbuilt
                return ops[cell, slot, op, stride]

            return take

        def build(spec: Spec, seed: int) -> Any:
            try:
                return self.build(spec, seed, maker)[0]
            except _Unbuilt:
                network = self.build(spec, seed)[0]
            kinds = self.cell_kinds()
            for i, cell in enumerate(network.cells):
                for slot, module in enumerate(cell.ops):
                    node = cell.nodes[slot // 2]
                    src, op = (node.a, node.op_a) if slot % 2 == 0 else (node.b, node.op_b)
                    ops.setdefault((i, slot, op, 2 if kinds[i] == "reduce" and src < 2 else 1), module)
            return network

        return build

    def cell_kinds(self) -> list[str]:
        """The kind of each cell of the network, in order (what `l2l.nas.micro.MicroNet` stacks)."""
        kinds: list[str] = []
        for stage in range(self.reductions + 1):
            kinds += (["reduce"] if stage > 0 else []) + ["normal"] * self.n_cells
        return kinds

    def _shared_key(self, spec: Spec, name: str, shape: tuple[int, ...]) -> Any:
        from l2l.nas.shared import shape_key
        from l2l.search_spaces.sharing import op_key

        parts = name.split(".")
        if len(parts) > 4 and parts[0] == "cells" and parts[2] == "ops":  # cells.<i>.ops.<slot>.<rest>
            kind = self.cell_kinds()[int(parts[1])]
            slot = int(parts[3])
            prefix = f"{kind}_n{slot // 2 + 2}_{'ab'[slot % 2]}"
            stride = 2 if kind == "reduce" and int(str(spec[prefix])) < 2 else 1
            op = str(spec[f"{kind}_n{slot // 2 + 2}_op_{'ab'[slot % 2]}"])
            return op_key(name, shape, f"cell{parts[1]}.slot{slot}.s{stride}", op)
        source = {"pre0": 2, "pre1": 1}.get(parts[2]) if len(parts) > 2 and parts[0] == "cells" else None
        if source is not None:  # a cell's input conv reads the concatenated loose ends of the cell `source` back
            return self._reads_ends(spec, name, shape, int(parts[1]) - source)
        if parts[0] == "head" and len(shape) == 2:  # the classifier reads the last cell's loose ends
            return self._reads_ends(spec, name, shape, len(self.cell_kinds()) - 1)
        return shape_key(name, shape)

    def _reads_ends(self, spec: Spec, name: str, shape: tuple[int, ...], cell: int) -> Any:
        """The key of a weight whose input channels (dimension 1) are cell ``cell``'s output."""
        from l2l.nas.genotypes import loose_ends
        from l2l.nas.shared import Slot, shape_key

        if cell < 0 or len(shape) < 2:  # reads the stem (one size), or a batch norm (the reading conv's filters)
            return shape_key(name, shape)
        kind = self.cell_kinds()[cell]
        ends = loose_ends(self.cell(spec, kind))
        width = shape[1] // len(ends)  # each node's channels
        columns = tuple((node - 2) * width + c for node in ends for c in range(width))
        full = (shape[0], self.n_nodes * width, *shape[2:])
        return Slot(f"{name}@{kind}", full, (shape[0], columns, *shape[2:]))

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        from l2l.nas.train import TrainConfig

        model, example = self.build(spec, ctx.seed)
        epochs = int(ctx.budget.get("epochs", self.epochs))
        config = TrainConfig(epochs=epochs, lr=self.lr, batch_size=self.batch_size)
        return train_and_measure(model, example, config, ctx, self.dataset, {"arch": self.describe(spec)})


class _Unbuilt(Exception):
    """An op at a cell's slot that no network of the store has built yet: the network is built in full."""
