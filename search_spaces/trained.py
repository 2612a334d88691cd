"""What the spaces whose children train on a dataset share: shipping the data once, and measuring a child."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from l2l.search_spaces.api import Context, Result, SearchSpace, SpaceError


class DatasetSpace(SearchSpace):
    """A space whose children all train on the dataset named ``self.dataset``.

    The dataset is the space's shared data: a distributed executor ships it to workers once per run.
    """

    dataset: str
    test_metrics: ClassVar[tuple[str, ...]] = ("test_acc", "test_loss")
    cost_metrics: ClassVar[tuple[str, ...]] = ("params", "flops", "latency_s", "train_time_s")

    def __init__(self, **options: Any) -> None:
        if "dataset" in options:  # a name nobody knows fails when the space is made, not in every child
            check_dataset(str(options["dataset"]))
        super().__init__(**options)

    def check_data(self) -> None:
        """Load the dataset (once per process: the first child and the Ray executor take it from there)."""
        from l2l.nas.data import load_dataset

        load_dataset(self.dataset)

    def shared_data(self) -> dict[str, Any]:
        from l2l.nas.data import load_dataset

        return {"dataset": load_dataset(self.dataset)}

    def use_shared_data(self, data: Mapping[str, Any]) -> None:
        from l2l.nas.data import install

        if "dataset" in data:
            install(data["dataset"])


def check_dataset(name: str) -> None:
    """Refuse an unknown dataset name when the space is made, before any child trains (a known dataset whose
    files a worker lacks is still that child's failure)."""
    from l2l.nas.data import dataset_names

    if name not in dataset_names():
        raise SpaceError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")


def train_and_measure(
    model: Any, example: Any, config: Any, ctx: Context, dataset: str, info: dict[str, Any]
) -> Result:
    """Train ``model`` on ``dataset`` (`l2l.nas.train.train_classifier`), then measure its cost on ``example``:
    parameters, multiply-adds of one input, inference latency and training time."""
    import torch

    from l2l.nas.cost import count_macs, count_parameters, latency_s
    from l2l.nas.data import load_dataset
    from l2l.nas.train import train_classifier

    torch.manual_seed(ctx.seed)  # draws during training (dropout, hashed layers' tie-breaks) repeat too
    if ctx.retrain:  # the honest figure: the whole budget, even after a first epoch at chance
        config = dataclasses.replace(config, stop_hopeless=False)
    out = train_classifier(
        model, load_dataset(dataset), config, seed=ctx.seed, device=ctx.device, should_stop=ctx.should_stop
    )
    model, example = model.to(ctx.device), example.to(ctx.device)
    info = dict(info)
    if out.stopped_early:
        info["stopped_early"] = out.stopped_early
    if out.pruned_at is not None:
        info["pruned_at"] = out.pruned_at
    return Result(
        reward=out.val_acc,
        val_loss=out.val_loss,
        val_acc=out.val_acc,
        test={"test_acc": out.test_acc, "test_loss": out.test_loss},
        cost={
            "params": float(count_parameters(model)),
            "flops": float(count_macs(model, example)),
            "latency_s": latency_s(model, example),
            "train_time_s": out.train_time,
        },
        curves=out.curves,
        info=info,
    )
