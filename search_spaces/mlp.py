"""`mlp`: multi-layer perceptrons on scikit-learn's digits, trained for real for a few epochs."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SpaceError, Spec
from l2l.search_spaces.trained import DatasetSpace, train_and_measure

WIDTHS = (8, 16, 32, 64, 128)
ACTS = ("relu", "tanh", "sigmoid", "elu")
DROPOUTS = ("0.0", "0.1", "0.3", "0.5")
LRS = ("0.0001", "0.0003", "0.001", "0.003", "0.01")


def input_grid(dataset: str) -> tuple[int, ...]:
    """The coordinates of a dataset's inputs for a smoothness prior: (length,) or (height, width) of a
    one-channel signal; () for several channels (no prior over them here)."""
    from l2l.nas.data import load_dataset
    from l2l.nas.genotypes import signal_shape

    shape = signal_shape(load_dataset(dataset).input_shape, dataset)
    return tuple(shape[1:]) if shape[0] == 1 else ()


class MLPSpace(DatasetSpace):
    """Depth, per-layer width and activation, dropout and Adam learning rate of an MLP classifier.

    Options: ``dataset`` ("digits"), ``epochs`` (5), ``batch_size`` (64), ``max_layers`` (3),
    ``widths`` (comma-separated choices, "8,16,32,64,128"). ``low_rank=true`` adds a per-layer rank
    decision (full, 1/2, 1/4, 1/8, 1/16 of the full rank; `l2l.nas.lowrank`); ``hashed=true`` a per-layer
    fraction of neurons evaluated per input by LSH (1.0 = dense, 0.2, 0.05; `l2l.nas.hashed`; a layer
    that is hashed keeps its full rank; ``hashed_share=batch`` lets a batch share its neurons);
    ``predicted=true`` a per-layer share of the weights learned, the rest predicted (dense, 1/2, 1/4,
    1/10; `l2l.nas.denil`: the first layer by a smoothness prior over the input's time or pixel
    positions, hidden layers by a fixed random dictionary; a hashed layer is not predicted, a predicted
    one keeps its full rank).
    Reward = validation accuracy after the last epoch; test accuracy is only reported; cost counts
    the low-rank, hashed and predicted layers as what they compute (``params``: learned values only).
    """

    name = "mlp"
    budget_keys = ("epochs",)
    description = "MLP on scikit-learn digits (8x8): depth, widths, activations, dropout, learning rate."

    def __init__(
        self,
        dataset: str = "digits",
        epochs: int = 5,
        batch_size: int = 64,
        max_layers: int = 3,
        widths: str = "8,16,32,64,128",
        low_rank: bool = False,
        hashed: bool = False,
        hashed_share: str = "input",
        predicted: bool = False,
    ) -> None:
        if epochs < 1 or batch_size < 1 or max_layers < 1:
            raise SpaceError(
                f"mlp space needs epochs, batch_size, max_layers >= 1; got {epochs}, {batch_size}, {max_layers}"
            )
        try:
            width_choices = tuple(int(w) for w in str(widths).split(","))
        except ValueError:
            raise SpaceError(f"mlp widths must be comma-separated integers, got {widths!r}") from None
        if not width_choices or min(width_choices) < 1:
            raise SpaceError(f"mlp widths must be positive, got {widths!r}")
        super().__init__(
            dataset=dataset,
            epochs=epochs,
            batch_size=batch_size,
            max_layers=max_layers,
            widths=widths,
            low_rank=low_rank,
            hashed=hashed,
            hashed_share=hashed_share,
            predicted=predicted,
        )
        from l2l.nas.genotypes import SHARING

        if hashed_share not in SHARING:
            raise SpaceError(f"unknown hashed_share {hashed_share!r}; known: {', '.join(SHARING)}")
        self.hashed_share = hashed_share
        from l2l.nas.genotypes import ACTIVE_CHOICES, PREDICT_CHOICES, RANK_CHOICES

        self.dataset, self.epochs, self.batch_size, self.max_layers = dataset, epochs, batch_size, max_layers
        self.low_rank, self.hashed, self.predicted = bool(low_rank), bool(hashed), bool(predicted)
        self._decisions = [Decision.categorical("layers", range(1, max_layers + 1))]
        for i in range(max_layers):
            self._decisions.append(Decision.categorical(f"width_{i}", width_choices))
            self._decisions.append(Decision.categorical(f"act_{i}", ACTS))
            if self.low_rank:
                self._decisions.append(Decision.categorical(f"rank_{i}", RANK_CHOICES))
            if self.hashed:
                self._decisions.append(Decision.categorical(f"active_{i}", ACTIVE_CHOICES))
            if self.predicted:
                self._decisions.append(Decision.categorical(f"learned_{i}", PREDICT_CHOICES))
        self._decisions.append(Decision.categorical("dropout", DROPOUTS))
        self._decisions.append(Decision.categorical("lr", LRS))

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def ignored_options(self) -> list[str]:
        if not self.hashed and self.hashed_share != "input":
            return [f"mlp option hashed_share={self.hashed_share} is how hashed layers pick; add hashed=true"]
        return []

    def canonical(self, spec: Spec) -> Spec | None:
        """Specs that build the same network are one architecture: the decisions of layers beyond ``layers``
        take their first value, as do those a layer does not use (a hashed layer's learned share and rank,
        a predicted layer's rank), and a rank is the first choice that builds the same one (ranks are clamped
        to [1, full]: 1/8 and 1/16 of a 64 -> 8 layer are both rank 1)."""
        from l2l.nas.genotypes import INPUT_SHAPES, same_rank

        n, first = int(str(spec["layers"])), {d.name: d.options[0] for d in self._decisions}
        out = spec.as_dict()
        for i in range(self.max_layers):
            unused = [k for k in first if k.endswith(f"_{i}")] if i >= n else []
            hashed = self.hashed and i < n and str(spec[f"active_{i}"]) != "1.0"
            if hashed and self.predicted:
                unused.append(f"learned_{i}")
            if self.low_rank and i < n and (hashed or (self.predicted and str(spec[f"learned_{i}"]) != "dense")):
                unused.append(f"rank_{i}")
            elif self.low_rank and i < n:
                n_in = math.prod(INPUT_SHAPES[self.dataset]) if i == 0 else int(str(spec[f"width_{i - 1}"]))
                out[f"rank_{i}"] = same_rank(str(spec[f"rank_{i}"]), n_in, int(str(spec[f"width_{i}"])))
            out.update({k: first[k] for k in unused})
        return Spec(space=spec.space, choices=tuple(out.items()))

    def _layer_label(self, spec: Spec, i: int) -> str:
        label = f"{spec[f'width_{i}']}{spec[f'act_{i}']}"
        if self.hashed and str(spec[f"active_{i}"]) != "1.0":
            return f"{label}[hashed {spec[f'active_{i}']}]"
        if self.predicted and str(spec[f"learned_{i}"]) != "dense":
            return f"{label}[learned {spec[f'learned_{i}']}]"
        if self.low_rank and str(spec[f"rank_{i}"]) != "full":
            return f"{label}[rank {spec[f'rank_{i}']}]"
        return label

    def graph(self, spec: Spec) -> dict[str, Any]:
        n = int(str(spec["layers"]))
        layers = [re.sub(r"^(\d+)(?=\D)", r"\1 ", self._layer_label(spec, i)) for i in range(n)]  # 128 relu
        nodes = ["input"] + [f"linear {label}" for label in layers] + ["classifier"]
        return {
            "nodes": nodes,
            "edges": [[i, i + 1, f"dropout {spec['dropout']}" if 0 < i < n else ""] for i in range(n + 1)],
        }

    def describe(self, spec: Spec) -> str:
        n = int(str(spec["layers"]))
        layers = "-".join(self._layer_label(spec, i) for i in range(n))
        return f"{layers} dropout={spec['dropout']} lr={spec['lr']}"

    def layout(self, spec: Spec) -> Any:
        """The `l2l.nas.mlp.MLPLayout` of a spec."""
        from l2l.nas.mlp import MLPLayout

        n = int(str(spec["layers"]))
        active = tuple(float(str(spec[f"active_{i}"])) for i in range(n)) if self.hashed else ()
        ranks = tuple(str(spec[f"rank_{i}"]) for i in range(n)) if self.low_rank else ()
        predicted = tuple(str(spec[f"learned_{i}"]) for i in range(n)) if self.predicted else ()
        if active and predicted:  # a hashed layer is not predicted
            predicted = tuple("dense" if a < 1.0 else p for p, a in zip(predicted, active, strict=True))
        if active and ranks:  # a hashed layer keeps its full rank
            ranks = tuple("full" if a < 1.0 else r for r, a in zip(ranks, active, strict=True))
        if predicted and ranks:  # so does a predicted one
            ranks = tuple("full" if p != "dense" else r for r, p in zip(ranks, predicted, strict=True))
        return MLPLayout(
            hidden=tuple((int(str(spec[f"width_{i}"])), str(spec[f"act_{i}"])) for i in range(n)),
            dropout=float(str(spec["dropout"])),
            ranks=ranks,
            active=active,
            share=self.hashed_share,
            predicted=predicted,
            grid=input_grid(self.dataset) if predicted else (),
        )

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        import math

        import torch

        from l2l.nas.data import load_dataset
        from l2l.nas.mlp import build_mlp
        from l2l.nas.train import TrainConfig

        data = load_dataset(self.dataset)
        torch.manual_seed(ctx.seed)  # the initial weights, and the dropout and hashing draws in training
        model = build_mlp(math.prod(data.input_shape), data.n_classes, self.layout(spec))
        epochs = int(ctx.budget.get("epochs", self.epochs))
        config = TrainConfig(epochs=epochs, lr=float(str(spec["lr"])), batch_size=self.batch_size)
        return train_and_measure(model, data.val.x[:1], config, ctx, self.dataset, {})
