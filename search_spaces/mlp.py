"""`mlp`: multi-layer perceptrons on scikit-learn's digits, trained for real for a few epochs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from search_spaces.api import Context, Decision, Result, SpaceError, Spec
from search_spaces.trained import DatasetSpace

WIDTHS = (8, 16, 32, 64, 128)
ACTS = ("relu", "tanh", "sigmoid", "elu")
DROPOUTS = ("0.0", "0.1", "0.3", "0.5")
LRS = ("0.0001", "0.0003", "0.001", "0.003", "0.01")


class MLPSpace(DatasetSpace):
    """Depth, per-layer width and activation, dropout and Adam learning rate of an MLP classifier.

    Options: ``dataset`` ("digits"), ``epochs`` (5), ``batch_size`` (64), ``max_layers`` (3).
    Reward = validation accuracy after the last epoch; test accuracy is only reported.
    """

    name = "mlp"
    description = "MLP on scikit-learn digits (8x8): depth, widths, activations, dropout, learning rate."

    def __init__(self, dataset: str = "digits", epochs: int = 5, batch_size: int = 64, max_layers: int = 3) -> None:
        if epochs < 1 or batch_size < 1 or max_layers < 1:
            raise SpaceError(
                f"mlp space needs epochs, batch_size, max_layers >= 1; got {epochs}, {batch_size}, {max_layers}"
            )
        super().__init__(dataset=dataset, epochs=epochs, batch_size=batch_size, max_layers=max_layers)
        self.dataset, self.epochs, self.batch_size, self.max_layers = dataset, epochs, batch_size, max_layers
        self._decisions = [Decision.categorical("layers", range(1, max_layers + 1))]
        for i in range(max_layers):
            self._decisions.append(Decision.categorical(f"width_{i}", WIDTHS))
            self._decisions.append(Decision.categorical(f"act_{i}", ACTS))
        self._decisions.append(Decision.categorical("dropout", DROPOUTS))
        self._decisions.append(Decision.categorical("lr", LRS))

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def graph(self, spec: Spec) -> dict[str, Any]:
        n = int(str(spec["layers"]))
        nodes = ["input"] + [f"linear {spec[f'width_{i}']}\n{spec[f'act_{i}']}" for i in range(n)] + ["classifier"]
        return {
            "nodes": nodes,
            "edges": [[i, i + 1, f"dropout {spec['dropout']}" if 0 < i < n else ""] for i in range(n + 1)],
        }

    def describe(self, spec: Spec) -> str:
        n = int(str(spec["layers"]))
        layers = "-".join(f"{spec[f'width_{i}']}{spec[f'act_{i}']}" for i in range(n))
        return f"{layers} dropout={spec['dropout']} lr={spec['lr']}"

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        import torch

        from nas.data import load_dataset
        from nas.mlp import MLPLayout, build_mlp, count_parameters, linear_macs
        from nas.train import TrainConfig, train_classifier

        data = load_dataset(self.dataset)
        n = int(str(spec["layers"]))
        layout = MLPLayout(
            hidden=tuple((int(str(spec[f"width_{i}"])), str(spec[f"act_{i}"])) for i in range(n)),
            dropout=float(str(spec["dropout"])),
        )
        torch.manual_seed(ctx.seed)
        in_features = 1
        for dim in data.input_shape:
            in_features *= dim
        model = build_mlp(in_features, data.n_classes, layout)
        epochs = int(ctx.budget.get("epochs", self.epochs))
        config = TrainConfig(epochs=epochs, lr=float(str(spec["lr"])), batch_size=self.batch_size)
        out = train_classifier(model, data, config, seed=ctx.seed, device=ctx.device, should_stop=ctx.should_stop)
        started = time.perf_counter()
        with torch.no_grad():
            model.eval()
            model(data.val.x[:1].to(ctx.device))
        latency = time.perf_counter() - started
        info: dict[str, object] = {"stopped_early": out.stopped_early} if out.stopped_early else {}
        if out.pruned_at is not None:
            info["pruned_at"] = out.pruned_at
        return Result(
            reward=out.val_acc,
            val_loss=out.val_loss,
            val_acc=out.val_acc,
            test={"test_acc": out.test_acc, "test_loss": out.test_loss},
            cost={
                "params": float(count_parameters(model)),
                "flops": float(linear_macs(model)),
                "latency_s": latency,
                "train_time_s": out.train_time,
            },
            curves=out.curves,
            info=info,
        )
