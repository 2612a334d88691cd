"""Contract every registered search space must pass, and the training code behind the real spaces."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from l2l.nas.data import DatasetError, load_dataset
from l2l.nas.mlp import MLPLayout, build_mlp, count_parameters, linear_macs
from l2l.nas.train import ChildDiverged, TrainConfig, train_classifier
from l2l.search_spaces import SearchSpace, available_spaces, load_space_class
from l2l.testing.spaces import Expected, SpaceContract

FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "mlp": {"epochs": 2},
    "optimizer": {"epochs": 1, "lrs": "0.01"},
    "nb201_cell": {"epochs": 1},
    "macro": {"epochs": 1, "layers": 3},
    "micro": {"epochs": 1, "nodes": 3, "channels": 4},
    "rnn_cell": {"steps": 3, "nodes": 3, "hidden": 16},
    "placement": {"model": "transformer", "groups": 8, "repeats": 1},
    "word_lm": {"max_steps": 3, "eval_words": 1000},
}
TRAINED = Expected(curves=("val_acc",), costs=("params",), test=("test_acc",), val_acc=True)
EXPECTED: dict[str, Expected] = {
    "toy": Expected(val_acc=True),  # toy and nb201 compute or look up their reward: no training curves
    "nb201": Expected(val_acc=True, test=("test_acc",)),
    "mlp": TRAINED,
    "nb201_cell": TRAINED,
    "macro": TRAINED,
    "micro": TRAINED,
    # a random update rule or cell may blow up: it must then fail and say so
    "optimizer": dataclasses.replace(TRAINED, may_fail=("diverged",)),
    # scored in bits per character, not accuracy
    "rnn_cell": Expected(curves=("val_bpc",), costs=("params",), test=("test_bpc",), may_fail=("diverged",)),
    # simulated: the step time, and out of memory when a placement does not fit
    "placement": Expected(costs=("step_time_ms",), may_fail=("out of memory",)),
    # scored in perplexity per word under the full softmax
    "word_lm": Expected(curves=("val_ppl",), costs=("params", "flops"), test=("test_ppl",)),
}


def test_every_registered_space_has_its_expectations() -> None:
    assert set(available_spaces()) <= set(EXPECTED), sorted(set(available_spaces()) - set(EXPECTED))


class TestEveryRegisteredSpace(SpaceContract):
    """The contract over every space in the entry-point group, with the fast options of each."""

    @pytest.fixture(params=available_spaces())
    def space_name(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture
    def space_class(self, space_name: str) -> type[SearchSpace]:
        return load_space_class(space_name)

    @pytest.fixture
    def fast_options(self, space_name: str) -> dict[str, Any]:
        return FAST_OPTIONS.get(space_name, {})

    @pytest.fixture
    def expected(self, space_name: str) -> Expected:
        return EXPECTED.get(space_name, Expected())


def test_digits_splits_are_fixed_and_disjoint() -> None:
    data = load_dataset("digits")
    assert (len(data.train), len(data.val), len(data.test)) == (1197, 300, 300)
    assert data.input_shape == (64,) and data.n_classes == 10
    rows = {tuple(r.tolist()) for r in data.train.x}
    assert not any(tuple(r.tolist()) in rows for r in data.test.x[:50])
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'; known: cifar10, digits, mnist1d, synthetic"):
        load_dataset("cifar")


def test_mlp_learns_digits() -> None:
    torch.manual_seed(0)
    model = build_mlp(64, 10, MLPLayout(hidden=((64, "relu"),)))
    out = train_classifier(model, load_dataset("digits"), TrainConfig(epochs=5, lr=3e-3), seed=0)
    assert out.val_acc > 0.9 and out.test_acc > 0.9
    assert out.curves["val_acc"][-1] > out.curves["val_acc"][0] - 0.02
    assert out.curves["train_loss"][-1] < out.curves["train_loss"][0]
    assert count_parameters(model) == 64 * 64 + 64 + 64 * 10 + 10
    assert linear_macs(model) == 64 * 64 + 64 * 10


def test_diverging_child_stops_at_once() -> None:
    torch.manual_seed(0)
    model = build_mlp(64, 10, MLPLayout(hidden=((128, "relu"), (128, "relu"))))
    with pytest.raises(ChildDiverged, match=r"loss (became|blew up)"):
        train_classifier(
            model,
            load_dataset("digits"),
            TrainConfig(epochs=50, lr=1e6),
            seed=0,
            optimizer_factory=lambda p, lr: torch.optim.SGD(p, lr=lr),
        )


def test_hopeless_child_stops_after_first_epoch() -> None:
    torch.manual_seed(0)
    model = build_mlp(64, 10, MLPLayout(hidden=((8, "sigmoid"),)))
    out = train_classifier(model, load_dataset("digits"), TrainConfig(epochs=20, lr=1e-7), seed=0)
    assert out.stopped_early is not None and "no better than chance" in out.stopped_early
    assert len(out.curves["val_acc"]) == 1


def test_a_retraining_trains_its_whole_budget_where_a_search_stops_a_hopeless_child() -> None:
    """`l2l runs best --retrain --epochs 20` stopped after epoch 1, at chance, and reported it as 20 epochs."""
    from types import SimpleNamespace
    from typing import Any, cast

    from l2l.runs.cli.retraining import retrain_child
    from l2l.search_spaces import Context, Decision, Result, SearchSpace, Spec
    from l2l.search_spaces.trained import train_and_measure

    class Hopeless(SearchSpace):  # an MLP that learns nothing in its first epoch (lr 1e-7)
        name = "hopeless"

        def decisions(self) -> list[Decision]:
            return [Decision.categorical("width", [8])]

        def evaluate(self, spec: Spec, ctx: Context) -> Result:
            torch.manual_seed(0)
            model = build_mlp(64, 10, MLPLayout(hidden=((8, "sigmoid"),)))
            example = load_dataset("digits").val.x[:1]
            return train_and_measure(model, example, TrainConfig(epochs=3, lr=1e-7), ctx, "digits", {})

    searched = Hopeless().evaluate(Hopeless().decode((0,)), Context())
    assert len(searched.curves["val_acc"]) == 1 and "no better than chance" in searched.info["stopped_early"]
    child = cast(Any, SimpleNamespace(number=0, spec=Hopeless().decode((0,)).to_json()))
    retrained = retrain_child(Hopeless(), child, {}, seed=0, device="cpu")
    assert len(retrained.curves["val_acc"]) == 3 and "stopped_early" not in retrained.info
