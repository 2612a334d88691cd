"""Optuna pruners stop hopeless children early, from real per-epoch curves; runs with pruning resume identically."""

from __future__ import annotations

import math
import pickle
import random
import re
import statistics
from pathlib import Path

import pytest

from l2l.runs.pruning import PrunerBridge, RungReporter, ThresholdReporter
from l2l.runs.search import Search, SearchConfig, SearchError
from l2l.runs.store import Store
from l2l.search_spaces import Result
from tests.test_search import check_interrupt_and_resume


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruner_stops_children_early_and_saves_epochs(tmp_path: Path, pruner: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    epochs = 6
    config = SearchConfig(
        space="mlp", strategy="random", children=24, batch=6, seed=1, pruner=pruner, space_options={"epochs": epochs}
    )
    run = Search.start(store, config).run()
    children = store.children(run)
    pruned = [c for c in children if c.metrics["info"].get("pruned_at") is not None]
    assert pruned, "no child was pruned"
    for c in pruned:
        assert len(c.curves["val_acc"]) == c.metrics["info"]["pruned_at"] < epochs
        assert "pruned after epoch" in c.metrics["info"]["stopped_early"]
    trained = sum(len(c.curves["val_acc"]) for c in children)
    assert trained < len(children) * epochs
    # the tables say which children stopped early: their reward is an earlier epoch's (they looked finished)
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    url = f"sqlite:///{tmp_path / 'p.db'}"
    shown = CliRunner().invoke(app, ["runs", "show", str(run), "--storage", url]).output
    assert f"; {len(pruned)} of the done stopped early by the {pruner} pruner" in " ".join(shown.split())
    for by in ("single", "mean"):
        listed = CliRunner().invoke(app, ["runs", "top", str(run), "-k", "24", "--by", by, "--storage", url],
                                    env={"COLUMNS": "300"}).output  # fmt: skip
        assert (
            len(re.findall(r"\(pruned @\d", listed)) == len(pruned)
            and "stopped by the run's pruner after epoch k" in listed
        )
    if pruner == "median":
        # Optuna's rule, checked from the store: a child stops when its best value so far is below the
        # median, at that epoch, of the children that ran to the end before it (one at a time here)
        for c in pruned:
            at = c.metrics["info"]["pruned_at"] - 1
            before = [
                f.curves["val_acc"][at] for f in children if f.number < c.number and len(f.curves["val_acc"]) == epochs
            ]
            assert before and max(c.curves["val_acc"][: at + 1]) < statistics.median(before)


def test_pruned_run_resumes_identically(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    config = SearchConfig(space="mlp", children=25, batch=4, seed=2, pruner="median", space_options={"epochs": 3})
    check_interrupt_and_resume(store, config)


def test_unknown_pruner() -> None:
    with pytest.raises(SearchError, match="unknown pruner 'early'; known: median, halving, hyperband"):
        SearchConfig(pruner="early")


def test_pruner_prunes_children_running_on_ray_workers(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    store = Store(f"sqlite:///{tmp_path / 'ray.db'}")
    epochs = 6
    config = SearchConfig(
        space="mlp",
        strategy="random",
        children=24,
        batch=6,
        seed=1,
        pruner="median",
        space_options={"epochs": epochs},
        executor="ray",
        executor_options={"max_concurrent": 2, "num_cpus": 2},
    )
    run = Search.start(store, config).run()
    children = store.children(run)
    # a worker decides on the study as the driver had it when the child was handed over: that
    # study must hold the curves of the children finished on other workers
    pruned = [c for c in children if c.metrics["info"].get("pruned_at") is not None]
    assert pruned, "no child was pruned on Ray"
    best = max(children, key=lambda c: c.reward or 0.0)
    assert len(best.curves["val_acc"]) == epochs


def test_a_worker_gets_a_constant_size_median_snapshot_with_optunas_verdicts() -> None:
    """What travels with a child to another process is the median pruner's thresholds, not the study; it
    prunes exactly when Optuna's `MedianPruner` on the driver's study would."""
    bridge, rng = PrunerBridge("median"), random.Random(0)
    sizes, verdicts = [], []
    for number in range(60):
        live = bridge.reporter(number)
        blob = pickle.dumps(live)
        sizes.append(len(blob))
        shipped = pickle.loads(blob)
        assert isinstance(shipped, ThresholdReporter)
        curve: list[float] = []
        pruned_at = None
        for epoch in range(rng.randrange(1, 6)):
            value = math.nan if rng.random() < 0.05 else round(rng.random(), 1)  # ties and the odd nan
            curve.append(value)
            verdict = live(epoch, value)
            assert shipped(epoch, value) == verdict, (number, epoch, curve)
            verdicts.append(verdict)
            if verdict:
                pruned_at = epoch + 1
                break
        info = {"pruned_at": pruned_at} if pruned_at else {}
        ok = rng.random() > 0.1
        result = Result(reward=0.5, curves={"val_acc": [*curve, 0.5]}, info=info)
        bridge.finish(number, result if ok else Result.failed("boom"))
    assert sum(verdicts) >= 10 and not all(verdicts)
    assert max(sizes) < 600 and max(sizes) - min(sizes) < 100, sizes  # a study grew by ~1 kB a child


@pytest.mark.parametrize("pruner", ["halving", "hyperband"])
def test_a_worker_gets_a_constant_size_rung_snapshot_with_optunas_verdicts(pruner: str) -> None:
    """Halving and Hyperband ship each child a `RungSnapshot` (a threshold per rung of its bracket), not the
    study: its size does not grow with the finished children, and it prunes exactly when Optuna's pruner on
    the driver's study would."""
    bridge, rng = PrunerBridge(pruner), random.Random(1)
    sizes, verdicts = [], []
    for number in range(150):
        live = bridge.reporter(number)
        blob = pickle.dumps(live)
        sizes.append(len(blob))
        shipped = pickle.loads(blob)
        assert isinstance(shipped, RungReporter)
        curve: list[float] = []
        pruned_at = None
        for epoch in range(rng.randrange(1, 11)):
            value = math.nan if rng.random() < 0.03 else round(rng.random(), 2)
            curve.append(value)
            verdict = live(epoch, value)
            assert shipped(epoch, value) == verdict, (number, epoch, curve)
            verdicts.append(verdict)
            if verdict:
                pruned_at = epoch + 1
                break
        # a pruned child's curve ends at its last report; a complete one trains a last epoch it does not report
        info, last = ({"pruned_at": pruned_at}, []) if pruned_at else ({}, [0.5])
        result = Result(reward=0.5, curves={"val_acc": [*curve, *last]}, info=info)
        bridge.finish(number, result if rng.random() > 0.1 else Result.failed("boom"))
    assert sum(verdicts) >= 10 and not all(verdicts)
    # the whole study pickled grew by about 1 kB a child; a snapshot holds a few rungs whatever the run
    assert max(sizes) < 400 and max(sizes[50:]) <= max(sizes[:50]) + 20, sizes


ASKING = """
from l2l.search_spaces import Decision, Result, SearchSpace

class Asking(SearchSpace):  # the plugin docs' loop: ask after each epoch, the last too; stop when told
    name = "asking"

    def __init__(self, epochs=6):
        super().__init__(epochs=epochs)
        self.epochs = epochs

    def decisions(self):
        return [Decision.categorical("q", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])]

    def evaluate(self, spec, ctx):
        curve = []
        for epoch in range(self.epochs):  # the ranking turns over at the last epoch: the pruner says stop there
            curve.append(spec["q"] * (epoch + 1) / 6 if epoch + 1 < self.epochs else 1 - spec["q"])
            if ctx.should_stop(epoch, curve[-1]):
                break
        return Result(reward=curve[-1], val_acc=curve[-1], curves={"val_acc": curve})
"""


def test_a_plugin_that_stops_when_its_pruner_says_is_recorded_as_pruned(tmp_path: Path) -> None:
    """Its children stopped after 2 of 6 epochs and were recorded as finished with their partial reward."""
    from l2l.runs.executors import pruned

    (tmp_path / "asking.py").write_text(ASKING)
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    config = SearchConfig(
        space=f"{tmp_path / 'asking.py'}:Asking", strategy="random", children=14, batch=1, seed=2, pruner="median"
    )
    run = Search.start(store, config).run()
    children = store.children(run, "done")
    short = [c for c in children if len(c.curves["val_acc"]) < 6]
    assert short, "no child was stopped"
    assert all(c.metrics["info"].get("pruned_at") == len(c.curves["val_acc"]) for c in short)
    # told to stop after its last epoch, a child trained its whole budget: not pruned
    assert all("pruned_at" not in c.metrics["info"] for c in children if len(c.curves["val_acc"]) == 6)
    trained_on = Result(reward=0.5, curves={"val_acc": [0.1, 0.3, 0.5]})  # asked, told to stop at 2, went on
    assert "pruned_at" not in pruned(trained_on, [2], 6).info and pruned(trained_on, [3], 6).info["pruned_at"] == 3
    assert "pruned_at" not in pruned(trained_on, [3], 3).info  # its last epoch
    assert "pruned_at" not in pruned(trained_on, [3], None).info  # a full training's length unknown: not claimed
