"""Weight-sharing search: shared networks compute what stand-alone children compute, rewards come from the
validation split, any strategy drives it, and a killed search resumes losing at most the epoch it was in."""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from l2l.nas.shared import SharedWeights, SharingError
from l2l.runs.search_config import SearchConfig, SearchError
from l2l.runs.store import Store
from l2l.runs.weight_sharing import WeightSharingSearch
from l2l.search_spaces import Decision, SearchSpace, Spec, load_space
from l2l.search_spaces.api import SpaceError
from l2l.search_spaces.sharing import ClassifierNetwork, SharedNetwork
from l2l.testing.sharing import check_shared_network

TINY = {
    "nb201_cell": {"channels": 4},
    "micro": {"channels": 4, "nodes": 3, "reductions": 1},
    "macro": {"layers": 4},
    "rnn_cell": {"hidden": 16, "embed": 8, "nodes": 4},
}
WS = {"epochs": 3, "warmup": 1, "steps": 6, "batch_size": 16, "controller_steps": 2, "val_batch": 32, "derive": 4}


def _store(network: SharedNetwork, seed: int = 0) -> SharedWeights:
    return SharedWeights(
        lambda spec: network.build(spec, seed), lambda spec: lambda name, shape: network.key(spec, name, shape)
    )


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_specs_subgraph_in_the_shared_network_computes_what_its_stand_alone_child_computes(name: str) -> None:
    check_shared_network(load_space(name, TINY[name]), specs=6, seed=1)


def test_architectures_share_exactly_the_weights_of_the_ops_they_have_in_common() -> None:
    space = load_space("nb201_cell", TINY["nb201_cell"])
    network = space.shared_network()
    weights = _store(network)
    ops = ["nor_conv_3x3"] * 6
    a = space.decode([space.decisions()[0].options.index(op) for op in ops])
    b_ops = list(ops)
    b_ops[2] = "nor_conv_1x1"
    b = space.decode([space.decisions()[0].options.index(op) for op in b_ops])
    keys_a, keys_b = weights.keys_of(a), weights.keys_of(b)
    only_a = set(keys_a) - set(keys_b)
    assert only_a and all(".edge2" in k and "nor_conv_3x3" in k for k in only_a)
    assert all(".edge2" in k and "nor_conv_1x1" in k for k in set(keys_b) - set(keys_a))
    common = set(keys_a) & set(keys_b)
    assert common and not any(".edge2" in k for k in common if ":" in k)
    # one step through b moves the common weights a reads, and not the conv only a has
    before = {k: p.detach().clone() for k, p in zip(keys_a, weights.model(a).parameters(), strict=True)}
    optimizer = torch.optim.SGD(weights.parameters(), lr=0.1)
    batch = next(network.train_batches(8, torch.Generator().manual_seed(0)))
    network.loss(weights.model(b), batch).backward()
    optimizer.step()
    after = dict(zip(keys_a, weights.model(a).parameters(), strict=True))
    moved = {k for k in keys_a if not torch.equal(before[k], after[k])}
    assert moved and moved <= common
    assert all(torch.equal(before[k], after[k]) for k in only_a)


def test_one_key_for_two_shapes_is_refused_with_the_key_named() -> None:
    weights = SharedWeights(lambda n: torch.nn.Linear(2, int(n)), lambda n: lambda name, shape: name)
    weights.model(3)
    with pytest.raises(SharingError, match=r"shared weight 'weight' has shape \(3, 2\) but an architecture needs"):
        weights.model(4)


class PartialSpace(SearchSpace):
    """A plugin whose shared network leaves out one of its decisions."""

    name = "partial"

    def decisions(self) -> list[Decision]:
        return [Decision.categorical("width", [4, 8]), Decision.categorical("depth", [1, 2])]

    def evaluate(self, spec: Spec, ctx: Any) -> Any:
        raise NotImplementedError

    def shared_network(self) -> SharedNetwork:
        build = lambda spec, seed: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))  # noqa: E731
        return ClassifierNetwork(self, "digits", build, None, covers=["width"])


def test_a_shared_network_that_does_not_cover_a_decision_is_refused_at_load_naming_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    config = SearchConfig(space=f"{__file__}:PartialSpace", strategy="random", weight_sharing={})
    with pytest.raises(SpaceError, match="its shared network does not cover decision 'depth' \\(it covers width\\)"):
        WeightSharingSearch.start(store, config)
    assert store.list_runs() == []  # refused before anything was recorded
    with pytest.raises(SpaceError, match="covers must be a sequence of decision names, got 'width,depth'"):
        ClassifierNetwork(PartialSpace(), "digits", lambda spec, seed: torch.nn.Flatten(), None, covers="width,depth")
    with pytest.raises(SearchError, match="space 'toy' offers no shared network"):
        WeightSharingSearch.start(store, SearchConfig(space="toy", weight_sharing={}))
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    shown = CliRunner().invoke(app, ["spaces", "show", f"{__file__}:MistakenSpace"], env={"COLUMNS": "400"})
    # the command it gave named the space "mistaken", which no registry knows
    assert f"weight sharing: yes (l2l search --space {__file__}:MistakenSpace --weight-sharing)" in shown.output


def _search(tmp_path: Path, strategy: str, seed: int = 0, **ws: Any) -> tuple[Store, int]:
    store = Store(f"sqlite:///{tmp_path / f'{strategy}-{seed}.db'}")
    config = SearchConfig(
        space="nb201_cell",
        space_options=TINY["nb201_cell"],
        strategy=strategy,
        batch=2,
        seed=seed,
        weight_sharing={**WS, **ws},
    )
    return store, WeightSharingSearch.start(store, config).run()


def test_scored_by_loss_an_architectures_reward_is_its_validation_likelihood_and_the_pick_follows_it(
    tmp_path: Path, store: Store
) -> None:
    by_loss, run_id = _search(tmp_path, "reinforce", score="loss")
    shared = by_loss.children(run_id, "shared") + by_loss.children(run_id, "candidate")
    derived = by_loss.children(run_id, "derived")[0]
    for child in [*shared, derived]:
        got = child.metrics["info"]["shared"]
        assert child.reward == pytest.approx(math.exp(-got["val_loss"])) and got["space_reward"] == got["val_acc"]
    assert derived.reward == max(c.reward or 0.0 for c in [*shared, derived] if c.status != "shared")
    # a shared network that gives no validation loss cannot be scored by it: one line, before a run is recorded
    config = SearchConfig(
        space=f"{__file__}:MistakenSpace",
        space_options={"mistake": "measure_noloss"},
        strategy="random",
        weight_sharing={**WS, "score": "loss"},
    )
    with pytest.raises(SearchError, match=re.escape("-W score=loss needs a val_loss from space 'mistaken'")):
        WeightSharingSearch.start(store, config)
    assert store.list_runs() == []


def test_a_cosine_schedule_anneals_the_shared_weights_rate_by_epoch_and_a_constant_one_keeps_it(tmp_path: Path) -> None:
    (tmp_path / "cosine").mkdir()
    cosine, run_id = _search(tmp_path / "cosine", "random", lr=0.01, schedule="cosine")
    constant, const_id = _search(tmp_path, "random", lr=0.01)
    want = [0.01 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]  # 0.01, 0.0075, 0.0025
    assert [e.extra["lr"] for e in cosine.epochs(run_id)] == pytest.approx(want)
    assert [e.extra["lr"] for e in constant.epochs(const_id)] == [0.01] * 3
    # the same first epoch (the same rate), then other steps: the optimizer trains at the recorded rate
    losses, const_losses = ([e.train_loss for e in s.epochs(i)] for s, i in ((cosine, run_id), (constant, const_id)))
    assert losses[0] == const_losses[0] and losses[1:] != pytest.approx(const_losses[1:], rel=1e-6)


@pytest.mark.parametrize("strategy", ["reinforce", "random", "evolution", "tpe", "reinforce+screen"])
def test_every_strategy_drives_a_weight_sharing_search_and_the_store_records_it(tmp_path: Path, strategy: str) -> None:
    store, run_id = _search(tmp_path, strategy, sampler="controller")  # it also draws the training architectures
    epochs = store.epochs(run_id)
    assert [e.epoch for e in epochs] == [0, 1, 2]
    assert epochs[0].updates == 0 and epochs[0].mean_reward is None  # the warm-up epoch: uniform, controller idle
    assert all(e.train_steps == WS["steps"] and e.train_loss > 0 for e in epochs)
    assert [e.updates for e in epochs[1:]] == [2, 2]
    shared = store.children(run_id, "shared")
    assert len(shared) == 2 * 2 * 2  # epochs after warm-up x controller steps x batch
    assert all(c.reward is not None and 0.0 <= c.reward <= 1.0 for c in shared)
    # scored by the validation loss (the default for a classifier), the space's accuracy kept beside it
    assert all(c.reward == pytest.approx(math.exp(-c.metrics["info"]["shared"]["val_loss"])) for c in shared)
    assert all(c.metrics["info"]["shared"]["space_reward"] == c.metrics["info"]["shared"]["val_acc"] for c in shared)
    assert len(store.updates(run_id)) == 4
    derived = store.children(run_id, "derived")
    candidates = store.children(run_id, "candidate")
    assert len(derived) == 1 and 1 + len(candidates) <= WS["derive"]
    assert derived[0].reward == max(c.reward or 0.0 for c in derived + candidates)
    assert 0.0 <= derived[0].metrics["info"]["parameter_free"] <= 1.0
    assert store.get_run(run_id).status == "done"
    assert store.count_children(run_id)["done"] == 0  # nothing here was trained stand-alone


def test_runs_list_and_best_show_the_epochs_and_the_retrained_result_of_a_weight_sharing_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    store, run_id = _search(tmp_path, "random")
    db = ["--storage", store.url]
    runner = CliRunner()
    listed = runner.invoke(app, ["runs", "list", *db], env={"COLUMNS": "200"}).output
    derived = store.children(run_id, "derived")[0]
    assert "3/3 epochs" in listed and f"{derived.reward:.4f} shared" in listed
    import l2l.runs.arch_plot

    titles: list[str] = []
    drawing = l2l.runs.arch_plot.plot_arch

    def noted(graph: Any, title: str, out: Path) -> Path:
        titles.append(title)
        return drawing(graph, title, out)

    monkeypatch.setattr(l2l.runs.arch_plot, "plot_arch", noted)
    drawn = runner.invoke(app, ["plot", "arch", str(run_id), "-o", str(tmp_path / "a.png"), *db])  # not retrained yet
    assert drawn.exit_code == 0 and (tmp_path / "a.png").stat().st_size > 0, drawn.output
    assert f"reward {derived.reward:.4f} with shared weights: " in titles[0]  # a score, not a trained accuracy
    best = runner.invoke(app, ["runs", "best", str(run_id), "--retrain", "--epochs", "1", *db], env={"COLUMNS": "200"})
    assert best.exit_code == 0, best.output
    retrained = store.children(run_id, "done")
    assert len(retrained) == 1 and f"recorded as child {retrained[0].number}" in best.output
    assert retrained[0].log_prob is None and retrained[0].entropy is None  # no controller sampled it
    again = runner.invoke(app, ["runs", "best", str(run_id), *db], env={"COLUMNS": "200"}).output
    free = f"{derived.metrics['info']['parameter_free']:.0%} parameter-free ops"  # the collapse figure
    assert f"child {derived.number}, reward {derived.reward:.4f} with shared weights ({free})" in again
    shown = runner.invoke(app, ["runs", "show", str(run_id), *db], env={"COLUMNS": "300"}).output
    assert f"with shared weights, {free})" in shown
    assert '"weight_sharing": {' in shown and '"children"' not in shown and '"executor"' not in shown  # unused
    assert f"retrained as child {retrained[0].number}: reward {retrained[0].reward:.4f}, test_acc" in again
    top = runner.invoke(app, ["runs", "top", str(run_id), *db], env={"COLUMNS": "200"}).output
    rows = [line for line in top.splitlines() if line.startswith("│")]  # retrained first; scores marked shared
    assert f"{retrained[0].reward:.4f}" in rows[0] and "shared" not in rows[0]
    assert f"{derived.reward:.4f} shared" in top
    # one architecture on two rows: each says what it is and names the other
    assert f"retrained from child {derived.number} (epochs 1, seed " in rows[0]  # two retrainings read apart
    assert f"derived, retrained as child {retrained[0].number}" in rows[1]
    second = ["plot", "arch", str(run_id), "--rank", "2", "-o", str(tmp_path / "b.png"), *db]  # runs top's rank 2
    drawn = runner.invoke(app, second, env={"COLUMNS": "200"})
    assert drawn.exit_code == 0 and f"{derived.reward:.4f}" in rows[1], drawn.output


def test_the_controllers_rewards_come_from_the_validation_split_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2l.nas.data import load_dataset
    from l2l.search_spaces.nb201_cell import NB201CellSpace

    seen: dict[str, list[torch.Tensor]] = {"loss": [], "measure": []}
    original = NB201CellSpace.shared_network

    def spied(self: NB201CellSpace) -> SharedNetwork:
        network = original(self)
        loss, measure = network.loss, network.measure

        def spy_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
            seen["loss"].append(batch[0])
            return loss(model, batch)

        def spy_measure(model: torch.nn.Module, batch: Any) -> dict[str, float]:
            seen["measure"].append(batch[0])
            return measure(model, batch)

        network.loss = spy_loss  # type: ignore[method-assign]
        network.measure = spy_measure  # type: ignore[method-assign]
        return network

    monkeypatch.setattr(NB201CellSpace, "shared_network", spied)
    _search(tmp_path, "reinforce")
    data = load_dataset("mnist1d")
    rows = lambda split: {tuple(r) for r in split.x.flatten(1).tolist()}  # noqa: E731
    train, val = rows(data.train), rows(data.val)
    # 8 architectures scored, and one built stand-alone at the start, to see what it reports (-W score=auto)
    assert len(seen["measure"]) == 8 + 1 and len(seen["loss"]) == 3 * WS["steps"]
    for x in seen["measure"]:
        assert {tuple(r) for r in x.flatten(1).tolist()} <= val - train
    for x in seen["loss"]:
        assert {tuple(r) for r in x.flatten(1).tolist()} <= train - val


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from l2l.runs.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_kill_9_mid_search_then_resume_loses_at_most_the_epoch_and_ends_as_an_unbroken_run(tmp_path: Path) -> None:
    settings = ["epochs=5", "warmup=1", "steps=20", "batch_size=16", "controller_steps=2", "val_batch=32", "derive=4"]
    common = ["--space", "nb201_cell", "-S", "channels=4", "--batch", "2", "--seed", "3", "-q", "--weight-sharing"]
    common += [a for s in settings for a in ("-W", s)]
    killed = tmp_path / "killed.db"
    proc = _cli("search", *common, "--storage", f"sqlite:///{killed}")
    store = Store(f"sqlite:///{killed}")
    deadline = time.time() + 120
    while time.time() < deadline and not (store.list_runs() and len(store.epochs(store.list_runs()[0].id)) >= 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run = store.list_runs()[0]
    kept = len(store.epochs(run.id))
    assert run.status == "running" and 2 <= kept < 5
    out, _ = _cli("search", "--resume", str(run.id), "--storage", f"sqlite:///{killed}", "-q").communicate(timeout=300)
    assert store.get_run(run.id).status == "done", out
    assert f"run {run.id}: space=nb201_cell" in out and f"(resumed at epoch {kept + 1})" in " ".join(out.split())

    whole = tmp_path / "whole.db"
    out, _ = _cli("search", *common, "--storage", f"sqlite:///{whole}").communicate(timeout=300)
    reference = Store(f"sqlite:///{whole}")
    ref_id = reference.list_runs()[0].id
    assert [e.epoch for e in store.epochs(run.id)] == [0, 1, 2, 3, 4]
    # the resumed run is the uninterrupted one: same architectures, same rewards, same derived cell
    got = [(c.number, c.status, c.tokens, c.reward) for c in store.children(run.id)]
    want = [(c.number, c.status, c.tokens, c.reward) for c in reference.children(ref_id)]
    assert got == want
    shown, _ = _cli("runs", "show", str(run.id), "--storage", f"sqlite:///{killed}").communicate(timeout=60)
    assert "weight sharing: 5 of 5 epochs, 16 architectures scored" in " ".join(shown.split()), shown
    losses = [e.train_loss for e in reference.epochs(ref_id)]
    assert [e.train_loss for e in store.epochs(run.id)] == pytest.approx(losses)


def test_weight_sharing_flags_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2l.runs.cli import main

    def run(*args: str) -> str:  # the console script's own entry point, in this process: its error line
        monkeypatch.setattr(sys, "argv", ["l2l", *args])
        monkeypatch.setenv("COLUMNS", "400")
        with pytest.raises(SystemExit):
            main()
        captured = capsys.readouterr()  # (a Ray log line before it: left by other tests' Ray in this process)
        return (captured.out + captured.err).strip().splitlines()[-1]

    db = f"sqlite:///{tmp_path / 'f.db'}"
    out = run("search", "--space", "toy", "-W", "epochs=2", "--storage", db)
    assert out.strip() == "error: -W (--ws-option) sets a weight-sharing search; add --weight-sharing"
    out = run("search", "--space", "toy", "--weight-sharing", "--storage", db)
    assert out.strip().startswith("error: space 'toy' offers no shared network")
    out = run("search", "--space", "nb201_cell", "--weight-sharing", "-W", "epoch=2", "--storage", db)
    expected = "error: unknown weight-sharing setting(s) ['epoch']; known: batch_size, controller_steps, derive"
    assert out.strip().startswith(expected)
    ws = ["search", "--space", "nb201_cell", "--weight-sharing", "--storage", db]
    out = run(*ws, "--children", "6", "--executor", "ray", "--max-concurrent", "2")
    expected = "error: a weight-sharing search runs in this process for its -W epochs: --children, --executor, "
    assert out.strip() == expected + "--max-concurrent do not apply to it; drop them"
    (tmp_path / "async.toml").write_text('mode = "async"\n')  # a config file's setting is named as its key
    out = run(*ws, "--config", str(tmp_path / "async.toml"), "-n", "3")
    expected = "error: a weight-sharing search runs in this process for its -W epochs: --children, mode (in "
    assert out.strip() == expected + f"{tmp_path / 'async.toml'}) do not apply to it; drop them"
    (tmp_path / "ray.toml").write_text("[executor_options]\nmax_concurrent = 2\n")  # named as the file spells it
    out = run(*ws, "--config", str(tmp_path / "ray.toml"))
    assert f"executor_options.max_concurrent (in {tmp_path / 'ray.toml'}) does not apply to it; drop it" in out
    out = run(*ws, "--device", "gpu")  # refused before any run is recorded
    assert out.strip().startswith("error: --device 'gpu' is not a torch device (cpu, cuda, cuda:1, mps)")
    out = run(*ws, "--strategy", "tpe+reeval")  # nothing to repeat: the scores move with the shared weights
    assert out.strip().startswith("error: strategy 'tpe+reeval': re-evaluation repeats a child's training")
    assert out.strip().endswith("nothing to repeat: use 'tpe'")
    assert Store(db).list_runs() == []
    out = run("search", "--resume", "1", "-W", "epochs=3", "--storage", db)
    assert out.strip() == "error: --resume continues run 1 with its stored settings; drop -W"
    out = run(*ws, "-W", "epochs=1")  # the default warm-up is 1 epoch
    assert out.strip().startswith("error: weight sharing: warmup (1) must be below epochs (1), or the controller")


def test_a_weight_sharing_search_is_recorded_on_every_store_backend(store: Store) -> None:
    config = SearchConfig(
        space="nb201_cell", space_options=TINY["nb201_cell"], strategy="random", batch=2, weight_sharing=WS
    )
    run_id = WeightSharingSearch.start(store, config).run()
    assert len(store.epochs(run_id)) == 3 and len(store.children(run_id, "shared")) == 8
    assert len(store.children(run_id, "derived")) == 1
    store.delete_run(run_id)
    assert store.list_runs() == []


class Scale(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class _InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


class InfiniteGradient(torch.nn.Module):
    """The identity on the way forward; an infinite gradient on the way back (a finite loss that overflows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _InfiniteGradient.apply(x)  # type: ignore[no-any-return]


class DivergingSpace(SearchSpace):
    """A plugin in which one option of one decision makes every output NaN (an architecture that diverges)."""

    name = "diverging"

    def __init__(self, options: str = "ok,nan,infgrad") -> None:
        super().__init__(options=options)
        self.choices = options.split(",")

    def decisions(self) -> list[Decision]:
        return [Decision.categorical("width", [8, 16]), Decision.categorical("scale", self.choices)]

    def evaluate(self, spec: Spec, ctx: Any) -> Any:
        raise NotImplementedError

    def shared_network(self) -> SharedNetwork:
        def build(spec: Spec, seed: int) -> torch.nn.Module:
            torch.manual_seed(seed)
            middle: torch.nn.Module = Scale(float("nan") if spec["scale"] == "nan" else 1.0)
            if spec["scale"] == "infgrad":
                middle = InfiniteGradient()
            width = int(str(spec["width"]))
            return torch.nn.Sequential(torch.nn.Linear(64, width), middle, torch.nn.Linear(width, 10))

        return ClassifierNetwork(self, "digits", build, None, covers=["width", "scale"])


def test_an_architecture_that_diverges_is_skipped_and_rewarded_as_a_failure_and_the_search_goes_on(
    store: Store,
) -> None:
    config = SearchConfig(
        space=f"{__file__}:DivergingSpace", strategy="random", batch=4, failure_reward=-1.0, weight_sharing=WS
    )
    search = WeightSharingSearch.start(store, config)
    run_id = search.run()
    epochs = store.epochs(run_id)
    assert sum(e.extra["skipped"] for e in epochs) > 0 and all(e.train_steps > 0 for e in epochs)
    shared = store.children(run_id, "shared")
    nan = [c for c in shared if Spec.from_json(c.spec)["scale"] == "nan"]
    assert nan and all(c.reward == -1.0 for c in nan)  # the run's failure reward, as for a failed child
    assert all(c.metrics["info"]["shared"]["diverged"] == 1.0 and c.val_loss is None for c in nan)
    derived = store.children(run_id, "derived")[0]
    assert Spec.from_json(derived.spec)["scale"] != "nan" and "diverged" not in derived.metrics["info"]["shared"]
    # steps through the overflowing gradient were skipped too: every shared weight is still finite
    assert all(bool(torch.isfinite(p).all()) for p in search.weights.parameters())
    fine = [c for c in shared if Spec.from_json(c.spec)["scale"] == "ok"]
    assert fine and not any("diverged" in c.metrics["info"]["shared"] for c in fine)
    config = SearchConfig(
        space=f"{__file__}:DivergingSpace", space_options={"options": "nan"}, strategy="random", weight_sharing=WS
    )
    with pytest.raises(SearchError, match="the shared weights diverged: no finite training loss in 6 batches"):
        WeightSharingSearch.start(store, config).run()
    assert store.get_run(run_id + 1).status == "failed"


@pytest.mark.parametrize("strategy", ["tpe", "evolution"])
def test_an_interrupted_search_of_any_strategy_resumes_as_the_uninterrupted_one(tmp_path: Path, strategy: str) -> None:
    from l2l.runs.search_config import SearchInterrupted
    from l2l.runs.weight_sharing import EpochEvent

    def stop_after_epoch_one(event: object) -> None:
        if isinstance(event, EpochEvent) and event.epoch == 1:
            raise KeyboardInterrupt

    config = SearchConfig(
        space="nb201_cell", space_options=TINY["nb201_cell"], strategy=strategy, batch=2, seed=4, weight_sharing=WS
    )
    store = Store(f"sqlite:///{tmp_path / 'resumed.db'}")
    search = WeightSharingSearch.start(store, config, listener=stop_after_epoch_one)
    with pytest.raises(SearchInterrupted):
        search.run()
    assert [e.epoch for e in store.epochs(search.run_id)] == [0, 1]
    WeightSharingSearch.resume(store, search.run_id).run()
    reference = Store(f"sqlite:///{tmp_path / 'whole.db'}")
    ref_id = WeightSharingSearch.start(reference, config).run()
    got = [(c.number, c.status, c.tokens, c.reward) for c in store.children(search.run_id)]
    assert got == [(c.number, c.status, c.tokens, c.reward) for c in reference.children(ref_id)]
    assert [e.train_loss for e in store.epochs(search.run_id)] == [e.train_loss for e in reference.epochs(ref_id)]


@pytest.mark.parametrize("name", ["nb201_cell", "micro"])
def test_assembling_architectures_from_ops_built_before_changes_no_result_of_a_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A space's sharing builder makes an architecture whose ops were all built before from those modules (no
    child constructed and initialized in full per architecture); the search records exactly what it records
    when every architecture is built in full."""
    space_class: Any = type(load_space(name, TINY[name]))
    builds: list[int] = []
    build = space_class.build

    def counted(self: Any, spec: Spec, seed: int, *args: Any) -> Any:
        builds.append(not args or args[0] is None)  # a build in full (micro's builder passes how to make ops)
        return build(self, spec, seed, *args)

    monkeypatch.setattr(space_class, "build", counted)
    ws = {**WS, "steps": 24, "derive": 8}
    config = SearchConfig(space=name, space_options=TINY[name], batch=2, seed=3, weight_sharing=ws)

    def search(name: str) -> tuple[list[Any], list[float], int]:
        builds.clear()
        store = Store(f"sqlite:///{tmp_path / name}")
        run_id = WeightSharingSearch.start(store, config).run()
        children = [(c.number, c.status, c.tokens, c.reward) for c in store.children(run_id)]
        return children, [e.train_loss for e in store.epochs(run_id)], sum(builds)

    assembled, losses, few = search("assembled.db")
    monkeypatch.setattr(ClassifierNetwork, "sharing_builder", SharedNetwork.sharing_builder)  # build every one
    in_full, full_losses, every = search("in_full.db")
    assert few < every / 2  # most architectures were assembled
    assert assembled == in_full and losses == full_losses


def test_ws_options_merge_into_the_config_files_weight_sharing_table(tmp_path: Path) -> None:
    from l2l.runs.cli.search import with_weight_sharing
    from l2l.runs.config import SearchFlags

    path = tmp_path / "search.toml"
    path.write_text('space = "nb201_cell"\n[weight_sharing]\nderive = 5\nsampler = "controller"\n')
    flags = with_weight_sharing(SearchFlags.parse({}, {}, config=path), True, ["epochs=3", "derive=7"])
    assert flags.settings()["weight_sharing"] == {"derive": 7, "sampler": "controller", "epochs": 3}
    bare = with_weight_sharing(SearchFlags.parse({}, {}, config=path), True, None)
    assert bare.settings()["weight_sharing"] == {"derive": 5, "sampler": "controller"}
    assert "weight_sharing" not in with_weight_sharing(SearchFlags.parse({}, {}), False, None).settings()
    # the file's [weight_sharing] table makes it a weight-sharing search: -W needs no --weight-sharing then
    flags = with_weight_sharing(SearchFlags.parse({}, {}, config=path), False, ["derive=3"])
    assert flags.settings()["weight_sharing"] == {"derive": 3, "sampler": "controller"}


def test_micro_weights_that_read_a_cell_take_the_columns_of_its_loose_ends() -> None:
    from l2l.nas.micro import loose_ends

    space: Any = load_space("micro", TINY["micro"])
    network = space.shared_network()
    weights = _store(network)
    sizes = [d.n_choices for d in space.decisions()]
    specs: dict[tuple[int, ...], Spec] = {}
    for seed in range(200):  # normal cells with other loose ends
        rng = torch.Generator().manual_seed(seed)
        spec = space.decode([int(torch.randint(0, k, (1,), generator=rng)) for k in sizes])
        specs.setdefault(tuple(loose_ends(space.cell(spec, "normal"))), spec)
    ends_a, ends_b = next((a, b) for a in specs for b in specs if set(a) - set(b))
    a, b = specs[ends_a], specs[ends_b]
    key = "head.3.weight@normal"  # the classifier reads the last (normal) cell's output
    assert key in weights.keys_of(a) and key in weights.keys_of(b)  # one tensor, other columns of it
    assert "cells.1.pre1.1.weight@normal" in weights.keys_of(a)  # so does the next cell's input conv
    conv = weights.tensor(key)
    width = conv.shape[1] // space.n_nodes
    before = conv.detach().clone()
    optimizer = torch.optim.SGD(weights.parameters(), lr=0.1)
    batch = next(network.train_batches(8, torch.Generator().manual_seed(0)))
    network.loss(weights.model(a), batch).backward()
    optimizer.step()
    moved = {int(c) // width + 2 for c in torch.nonzero((conv.detach() != before).any(dim=0).flatten()).flatten()}
    assert moved == set(ends_a)  # the node blocks a's cell outputs, not b's others


def test_hashed_spaces_say_why_they_offer_no_shared_network() -> None:
    with pytest.raises(SpaceError, match="rnn_cell with hashed=true offers no shared network"):
        load_space("rnn_cell", {"hashed": True}).shared_network()
    for option in ("low_rank", "predicted"):  # factored layers keyed by shape: they barely shared
        with pytest.raises(SpaceError, match=f"macro with {option}=true offers no shared network"):
            load_space("macro", {option: True}).shared_network()
    assert (
        load_space("rnn_cell", TINY["rnn_cell"])
        .shared_network()
        .parameter_free(load_space("rnn_cell", TINY["rnn_cell"]).decode([0] * 7))
        is None
    )


def test_the_progress_display_is_told_how_far_the_derive_phase_is(tmp_path: Path) -> None:
    from l2l.runs.weight_sharing import DeriveEvent, EpochEvent

    events: list[object] = []
    config = SearchConfig(
        space="nb201_cell", space_options=TINY["nb201_cell"], strategy="random", batch=2, seed=1, weight_sharing=WS
    )
    store = Store(f"sqlite:///{tmp_path / 'derive.db'}")
    run = WeightSharingSearch.start(store, config, listener=events.append).run()
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    derive = events[len(epochs) :]
    assert epochs and events[: len(epochs)] == epochs  # the epochs first, then the derive phase
    scored = len(store.children(run, "candidate")) + len(store.children(run, "derived"))
    assert 1 <= scored <= WS["derive"]  # the distinct candidates scored, at most `derive`
    assert derive == [DeriveEvent(scored, k) for k in range(scored + 1)]  # started, then one per candidate


def test_a_training_batch_larger_than_the_split_is_the_whole_split() -> None:
    """`-W batch_size` above the training split gave no step at all, and a run that failed as 'diverged'."""
    network = load_space("nb201_cell", {"dataset": "digits"}).shared_network()
    n = len(network.data.train)  # type: ignore[attr-defined]
    batches = list(network.train_batches(10 * n, torch.Generator().manual_seed(0)))
    assert len(batches) == 1 and len(batches[0][0]) == n


def test_a_transformed_reward_is_stored_as_what_the_controller_learned_from(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'cubed.db'}")
    config = SearchConfig(
        space="nb201_cell", space_options=TINY["nb201_cell"], strategy="reinforce", batch=2, seed=0,
        controller={"reward_transform": "cubed"}, weight_sharing=WS,
    )  # fmt: skip
    run = WeightSharingSearch.start(store, config).run()
    scored = store.children(run, "shared")
    assert scored and all(c.reward is not None for c in scored)
    # Zoph & Le's accuracy cubed, whatever scores the architectures (by default their validation loss)
    cubed = [c.metrics["info"]["shared"]["val_acc"] ** 3 for c in scored]
    assert [c.controller_reward for c in scored] == pytest.approx(cubed)


def test_macro_growing_depth_is_refused_for_weight_sharing() -> None:
    with pytest.raises(SpaceError, match=r"macro's growing depth \(start_layers\) does not apply to weight sharing"):
        load_space("macro", {"start_layers": 2}).shared_network()


def test_resuming_with_other_settings_names_no_executor_option_for_a_weight_sharing_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    store, run = _search(tmp_path, "random")
    out = CliRunner().invoke(app, ["search", "--resume", str(run), "--seed", "3", "--storage", store.url])
    assert out.exit_code == 1 and "drop --seed" in out.output and "--max-concurrent" not in out.output, out.output


def test_a_run_stopped_before_it_derived_lists_what_it_scored(tmp_path: Path, sharing_run: Callable[..., int]) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    store = Store(url)
    run = sharing_run(store, [[0.0, 0.1, 0.2]], 3)
    store.set_run_status(run, "failed")
    runner = CliRunner(env={"COLUMNS": "300"})
    top = runner.invoke(app, ["runs", "top", str(run), "--storage", url])
    assert top.exit_code == 0 and top.output.index("0.2000 shared") < top.output.index("0.1000 shared"), top.output
    assert "scored while searching" in top.output
    best = runner.invoke(app, ["runs", "best", str(run), "--storage", url])
    assert best.exit_code == 1 and f"run {run} has no derived child yet (it derives one after its last epoch; " in (
        " ".join(best.output.split())
    )
    assert f"`l2l search --resume {run} --storage {url}` continues it" in " ".join(best.output.split())


def test_the_json_export_of_a_weight_sharing_run_holds_its_epochs(
    tmp_path: Path, sharing_run: Callable[..., int]
) -> None:
    import json

    from typer.testing import CliRunner

    from l2l.runs.cli import app

    url = f"sqlite:///{tmp_path / 'export.db'}"
    run = sharing_run(Store(url), [[0.1], [0.2, 0.3]], 2)
    out = CliRunner().invoke(app, ["runs", "export", str(run), "--format", "json", "--storage", url])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert [(e["epoch"], e["train_loss"]) for e in payload["epochs"]] == [(0, 1.0), (1, 0.75)]
    assert [c["status"] for c in payload["children"]] == ["shared"] * 3


class MistakenNetwork(ClassifierNetwork):
    """A plugin's shared network that makes one mistake (``mistake``) in what it returns."""

    mistake = ""

    def loss(self, model: torch.nn.Module, batch: Any) -> Any:
        if self.mistake == "loss_raises":
            raise RuntimeError("shared loss broke")
        loss = super().loss(model, batch)
        return float(loss.detach()) if self.mistake == "loss_float" else loss

    def measure(self, model: torch.nn.Module, batch: Any) -> Any:
        got = super().measure(model, batch)
        wrong: dict[str, Any] = {
            "measure_float": got["reward"],
            "measure_str": {**got, "reward": "high"},
            "measure_noreward": {k: v for k, v in got.items() if k != "reward"},
            "measure_tensor": {**got, "reward": torch.tensor(got["reward"])},  # taken as its value
            "measure_vector": {**got, "reward": torch.tensor([got["reward"]] * 2)},
            "measure_noloss": {k: v for k, v in got.items() if k != "val_loss"},
        }
        return wrong.get(self.mistake, got)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Any:
        if self.mistake == "batches_raise":
            return self._breaking(batch_size, generator)
        return iter(()) if self.mistake == "no_batches" else super().train_batches(batch_size, generator)

    def _breaking(self, batch_size: int, generator: torch.Generator) -> Any:
        yield from itertools.islice(super().train_batches(batch_size, generator), 2)
        raise OSError("the data file went away")

    def measure_split(self, model: torch.nn.Module, device: torch.device) -> Any:
        got = super().measure_split(model, device)
        return {**got, "reward": float("nan")} if self.mistake == "split_nan" else got


class MistakenSpace(SearchSpace):
    name = "mistaken"

    def __init__(self, mistake: str = "") -> None:
        super().__init__(mistake=mistake)
        self.mistake = mistake

    def decisions(self) -> list[Decision]:
        return [Decision.categorical("width", [8, 16])]

    def evaluate(self, spec: Spec, ctx: Any) -> Any:
        raise NotImplementedError

    def shared_network(self) -> SharedNetwork:
        def build(spec: Spec, seed: int) -> Any:
            width = int(str(spec["width"]))
            net = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10))
            return None if self.mistake == "build_none" else net

        def wrong_builder() -> Any:  # assembles one network whatever the spec: every architecture the same
            return lambda spec, seed: torch.nn.Sequential(
                torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 10)
            )

        own = wrong_builder if self.mistake == "builder_wrong" else None
        key: Any = (lambda spec, name, shape: None) if self.mistake == "key_none" else None
        network = MistakenNetwork(self, "digits", build, key, covers=["width"], sharing_builder=own)
        network.mistake = self.mistake
        return network


@pytest.mark.parametrize(
    ("mistake", "message"),
    [  # each was a traceback (AttributeError, TypeError) or, without a reward, every architecture scored 0
        ("build_none", "build() returned NoneType, not a torch.nn.Module"),
        ("loss_float", "its shared network's loss() returned float; expected a scalar tensor"),
        ("measure_float", "its shared network's measure() returned float; expected a dict of numbers with a 'reward'"),
        ("measure_str", "its shared network's measure() returned 'reward': str; expected a number"),
        ("measure_noreward", "its shared network's measure() returned no 'reward' (its keys: val_acc, val_loss)"),
        ("builder_wrong", "its shared network's sharing_builder() made a network whose weights are not the stand"),
        ("key_none", "key() returned NoneType for '0.weight' ("),
        # what a plugin's network raises (it was a traceback): one line naming the space and the method
        ("loss_raises", "space 'mistaken': its shared network's loss() raised RuntimeError: shared loss broke"),
        ("batches_raise", "its shared network's train_batches() raised OSError: the data file went away"),
    ],
)
def test_a_shared_network_that_returns_the_wrong_thing_is_named_in_one_line(
    store: Store, mistake: str, message: str
) -> None:
    config = SearchConfig(
        space=f"{__file__}:MistakenSpace", space_options={"mistake": mistake}, strategy="random", weight_sharing=WS
    )
    with pytest.raises((SearchError, SpaceError), match=re.escape(message)):
        WeightSharingSearch.start(store, config).run()


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("measure_vector", "its shared network's measure() returned 'reward': Tensor; expected a number"),
        ("builder_wrong", "sharing_builder() made a network whose weights are not the stand-alone child's"),
    ],
)
def test_the_shared_network_contract_says_what_the_search_would_say(mistake: str, message: str) -> None:
    with pytest.raises((AssertionError, SpaceError), match=re.escape(message)):
        check_shared_network(MistakenSpace(mistake))


def test_a_tensor_reward_is_taken_and_a_derive_where_every_candidate_diverged_says_so(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    db = f"sqlite:///{tmp_path / 't.db'}"
    ws = [x for k, v in WS.items() for x in ("-W", f"{k}={v}")]
    args = ["search", "--space", f"{__file__}:MistakenSpace", "--weight-sharing", *ws, "--strategy", "random"]
    out = CliRunner().invoke(app, [*args, "-S", "mistake=measure_tensor", "--storage", db], env={"COLUMNS": "400"})
    assert out.exit_code == 0 and "derived child" in out.output, out.output
    assert 0 < (Store(db).children(1, "shared")[0].reward or 0) <= 1
    out = CliRunner().invoke(app, [*args, "-S", "mistake=split_nan", "--storage", db], env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())
    assert "derived child" in said and "(every candidate diverged: reward" in said and "is the failure reward" in said
    # no training batch at all is not divergence, and a run with no epoch has nothing to resume: it is removed
    out = CliRunner().invoke(app, [*args, "-S", "mistake=no_batches", "--storage", db], env={"COLUMNS": "400"})
    said = " ".join(out.output.split())
    assert out.exit_code == 1 and "its shared network's train_batches() gave no batch of -W batch_size=16" in said
    assert "run 3 was removed: no epoch finished, so it holds nothing to resume" in said and "--resume" not in said
    assert sorted(r.id for r in Store(db).list_runs()) == [1, 2]
    assert "validation reward" not in said  # it was reported as a measurement


def test_tables_show_the_spaces_validation_figure_of_a_shared_weight_score() -> None:
    from l2l.runs.cli.formatting import MetricView

    view = MetricView("bpc")  # rnn_cell: val_bpc kept among the architecture's shared-weight figures, shown as "-"
    assert view.val({"info": {"shared": {"reward": 0.02, "val_bpc": 4.44}}}, None) == "4.4400"
    assert view.val({"info": {"val_bpc": 2.5, "shared": {"val_bpc": 4.44}}}, None) == "2.5000"  # a trained child's


def test_covers_may_come_as_any_sequence_and_metrics_as_any_real_number() -> None:
    import numpy as np

    from l2l.search_spaces.sharing import covered, plain_metrics

    space = load_space("nb201_cell", TINY["nb201_cell"])
    names = tuple(d.name for d in space.decisions())
    assert covered(space, (d.name for d in space.decisions())) == names  # a generator, read once
    measured = {"reward": np.float32(0.5), "steps": np.int64(3), "converged": True, "loss": torch.tensor(0.25)}
    assert plain_metrics("s", measured) == {"reward": 0.5, "steps": 3.0, "converged": 1.0, "loss": 0.25}


def test_a_recurrent_cell_whose_state_explodes_under_shared_weights_scores_as_diverged() -> None:
    """Cells whose state blew up scored finite rewards of -9e19 bits per character (reward=bpc), which REINFORCE
    learned from; a stand-alone child of the same cell fails ("the state exploded")."""
    network = load_space("rnn_cell", {"reward": "bpc"}).shared_network()
    assert network is not None
    vocab = network.corpus.n_vocab  # type: ignore[attr-defined]

    class Scaled(torch.nn.Module):  # logits of one confident wrong guess, times a scale
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = scale

        def initial_state(self, batch: int, device: torch.device) -> None:
            return None

        def forward(self, x: torch.Tensor, state: None) -> tuple[torch.Tensor, None]:
            logits = torch.zeros(*x.shape, vocab)
            logits[..., 0] = self.scale
            return logits, None

    batch = network.val_batch(4, torch.Generator().manual_seed(0))
    fine = network.measure(Scaled(1.0), batch)
    assert 0 < fine["val_bpc"] < 10 and fine["reward"] == -fine["val_bpc"]
    exploded = network.measure(Scaled(1e6), batch)  # ~1e6 nats per character: the state blew up
    assert exploded["val_bpc"] == float("inf") and exploded["reward"] != exploded["reward"]  # not finite: diverged


def test_a_done_weight_sharing_run_says_its_epochs_when_asked_to_resume(
    tmp_path: Path, sharing_run: Callable[..., int]
) -> None:
    """It said "already done (450 children)" of a run whose 449 records are what its 12 epochs scored."""
    from l2l.runs.driver import resumable

    store = Store(f"sqlite:///{tmp_path / 'ws.db'}")
    run = sharing_run(store, [[0.1, 0.2], [0.3]], 2)
    store.set_run_status(run, "done")
    with pytest.raises(SearchError, match=rf"run {run} is already done \(2 epochs\); nothing to resume"):
        resumable(store, run, SearchError)


def test_the_bars_elapsed_time_goes_on_through_the_derive_phase(
    tmp_path: Path, sharing_run: Callable[..., int]
) -> None:
    """Its clock stopped with the last epoch: a search of 58 s ended on "0:00:05", its 49 s of deriving left out."""
    import time

    from l2l.runs.cli.progress import SharingProgress
    from l2l.runs.weight_sharing import DeriveEvent

    store = Store(f"sqlite:///{tmp_path / 'ws.db'}")
    run = sharing_run(store, [[0.1], [0.2]], 2)  # both epochs done: what is left is the derive phase
    bar = SharingProgress(run, 2, store, quiet=True)
    bar.on_event(DeriveEvent(10))
    time.sleep(1.1)
    (task,) = bar.progress.tasks
    clock = bar.progress.columns[-1]
    assert task.finished and not isinstance(clock, str) and str(clock.render(task)) in ("0:00:01", "0:00:02")


def test_a_weight_sharing_search_refuses_data_this_machine_lacks_before_a_run(
    tmp_path: Path, dataset_missing: Callable[[str], None]
) -> None:
    """Its epochs train in this process, and its shared network loads the data as the search is made: a dataset
    this machine cannot load is one line before anything is recorded."""
    from l2l.runs.weight_sharing import WeightSharingSearch

    dataset_missing("mnist1d")
    store = Store(f"sqlite:///{tmp_path / 'ws.db'}")
    config = SearchConfig(space="nb201_cell", strategy="random", weight_sharing={"epochs": 2})
    with pytest.raises(SearchError, match=r"space 'nb201_cell': .*dataset 'mnist1d' needs a package this machine"):
        WeightSharingSearch.start(store, config)
    assert store.list_runs() == []


class OwnOps(MistakenSpace):
    """Ops of its own beside one l2l knows (identity)."""

    name = "own_ops"

    def decisions(self) -> list[Decision]:
        return [Decision.categorical("op", ["identity", "conv5", "pool"]), Decision.categorical("width", [8, 16])]


def test_the_parameter_free_share_counts_op_decisions_and_none_it_cannot_tell() -> None:
    nb201 = load_space("nb201_cell")
    ops = ["skip_connect", "nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect"]
    spec = nb201.decode([nb201.decisions()[0].options.index(op) for op in ops])
    assert nb201.shared_network().parameter_free(spec) == 4 / 6  # skips, pool, none
    # a plugin's "identity" among ops l2l does not know was counted alone: 100% parameter-free
    own = OwnOps()
    assert own.shared_network().parameter_free(own.decode([0, 0])) is None


def test_fair_sampling_steps_once_per_group_that_puts_every_op_on_every_edge(store: Store) -> None:
    # -W sampler=fair (FairNAS's strict fairness): 5 consecutive batches, 5 cells, each op once at each edge
    settings = {**WS, "sampler": "fair", "steps": 12}  # 12 batches: two whole groups and one cut short
    config = SearchConfig(
        space="nb201_cell", space_options=TINY["nb201_cell"], strategy="random", weight_sharing=settings
    )
    search = WeightSharingSearch.start(store, config)
    drawn: list[list[tuple[int, ...]]] = []
    stepped: list[int] = []
    draws, step = search._draws, search._step

    def spy_draws(sampler: str) -> list[tuple[int, ...]]:
        drawn.append(list(draws(sampler)))
        return list(drawn[-1])

    def spy_step(taken: Any) -> bool:
        stepped.append(len(taken))
        return step(taken)

    search._draws, search._step = spy_draws, spy_step  # type: ignore[method-assign]
    run = search.run()
    epochs = store.epochs(run)
    assert [e.extra["sampler"] for e in epochs] == ["fair"] * 3 and [e.train_steps for e in epochs] == [12] * 3
    assert stepped == [5, 5, 2] * 3  # a step per group, on its batches' mean gradient; the cut one on what it has
    ops = len(search.space.decisions()[0].options)
    for group in drawn:
        assert len(group) == ops and all(len({t[i] for t in group}) == ops for i in range(len(group[0])))
