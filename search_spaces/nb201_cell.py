"""`nb201_cell`: NAS-Bench-201 cells trained for real on the datasets l2l has offline (or CIFAR-10)."""

from __future__ import annotations

from typing import Any

from l2l.search_spaces.api import Context, Result, SpaceError, Spec
from l2l.search_spaces.nb201 import CellSpace, load_table
from l2l.search_spaces.trained import DatasetSpace, train_and_measure


class NB201CellSpace(CellSpace, DatasetSpace):
    """The decisions of `nb201` (six edges, five ops), but each cell is built and trained.

    Options: ``dataset`` (mnist1d, digits, cifar10, ...), ``epochs`` (5), ``channels`` (8; the
    benchmark uses 16), ``cells_per_stage`` (1; the benchmark uses 5), ``batch_size`` (64), ``lr`` (Adam,
    0.003). Reward = validation accuracy. The result also carries the published CIFAR-10 200-epoch test
    accuracy of the same cell (``info.nb201_c10_test``) for comparison, and its cost: parameters,
    multiply-adds, inference latency and training time.
    """

    name = "nb201_cell"
    budget_keys = ("epochs",)
    description = "NAS-Bench-201 cells built and trained (MNIST-1D by default), with their cost."

    def __init__(
        self,
        dataset: str = "mnist1d",
        epochs: int = 5,
        channels: int = 8,
        cells_per_stage: int = 1,
        batch_size: int = 64,
        lr: float = 0.003,
    ) -> None:
        if min(epochs, channels, cells_per_stage, batch_size) < 1 or not lr > 0:
            raise SpaceError(
                "nb201_cell needs epochs, channels, cells_per_stage, batch_size >= 1 and lr > 0; got "
                f"{epochs}, {channels}, {cells_per_stage}, {batch_size}, {lr}"
            )
        super().__init__(
            dataset=dataset,
            epochs=epochs,
            channels=channels,
            cells_per_stage=cells_per_stage,
            batch_size=batch_size,
            lr=lr,
        )
        self.dataset, self.epochs, self.channels = dataset, epochs, channels
        self.cells_per_stage, self.batch_size, self.lr = cells_per_stage, batch_size, lr

    def build(self, spec: Spec, seed: int) -> Any:
        """The network of ``spec`` with the initial weights of ``seed``, and an example input."""
        import torch

        from l2l.nas.cells import build_cell_network
        from l2l.nas.data import load_dataset
        from l2l.nas.genotypes import signal_shape

        data = load_dataset(self.dataset)
        shape = signal_shape(data.input_shape, self.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_cell_network(self.ops(spec), shape, data.n_classes, self.channels, self.cells_per_stage)
        return model, data.val.x[:1]

    def shared_network(self) -> Any:
        """Weight sharing: every cell's edge k keeps one set of weights per op (ENAS's shared cell)."""
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
        """Networks for one store of shared weights: an architecture whose every op at every place was built
        before is assembled from those modules (`l2l.nas.cells.CellParts`), any other built in full."""
        from l2l.nas.cells import CellParts

        parts = CellParts()

        def build(spec: Spec, seed: int) -> Any:
            ops = self.ops(spec)
            network = parts.assemble(ops)
            if network is None:
                network = self.build(spec, seed)[0]
                parts.remember(ops, network)
            return network

        return build

    def _shared_key(self, spec: Spec, name: str, shape: tuple[int, ...]) -> str:
        from l2l.nas.shared import shape_key
        from l2l.search_spaces.sharing import op_key

        parts = name.split(".")
        if len(parts) > 3 and parts[1] == "edges":  # "<cell>.edges.<k>.<rest>": edge k of a cell
            return op_key(name, shape, f"{parts[0]}.edge{parts[2]}", self.ops(spec)[int(parts[2])])
        return shape_key(name, shape)

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        from l2l.nas.train import TrainConfig

        model, example = self.build(spec, ctx.seed)
        epochs = int(ctx.budget.get("epochs", self.epochs))
        config = TrainConfig(epochs=epochs, lr=self.lr, batch_size=self.batch_size)
        info: dict[str, Any] = {"arch": self.describe(spec)}
        row = load_table().get(self.describe(spec))
        if row is not None:
            info["nb201_c10_test"] = row["c10_test_200ep"]
        return train_and_measure(model, example, config, ctx, self.dataset, info)
