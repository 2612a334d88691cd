"""DistBelief's modes on Ray: Sandblaster follows full-batch L-BFGS, Downpour with one replica follows plain
training, and a Downpour child survives losing a replica and a parameter-server shard."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from l2l.nas.data import Dataset, Split
from l2l.nas.distbelief import recording, server_learning_rate, use_engine
from l2l.nas.train import TrainConfig, train_classifier
from l2l.runs.distbelief import DataParallel, DataParallelError, engine_for

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    # a new local instance on free ports, never one that another process started with `ray start`
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _data(n: int = 240) -> Dataset:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g) * 2

    def split(m: int) -> Split:
        y = torch.randint(0, 4, (m,), generator=g)
        return Split(centers[y] + torch.randn(m, 8, generator=g), y)

    return Dataset("blobs", split(n), split(80), split(80), n_classes=4)


def _model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))


def _train_in_background(
    engine: Any, data: Dataset, config: TrainConfig, seed: int
) -> tuple[threading.Thread, dict[str, Any]]:
    """Train `_model()` under ``engine`` in a thread (so a test can kill actors meanwhile); box["out"] at the end."""
    box: dict[str, Any] = {}

    def train() -> None:
        with use_engine(engine):
            box["out"] = train_classifier(_model(), data, config, seed=seed)

    thread = threading.Thread(target=train)
    thread.start()
    return thread, box


def _wait_for(done: Callable[[], bool], deadline: float) -> None:
    while not done() and time.monotonic() < deadline:
        time.sleep(0.005)


def _full_batch_lbfgs(model: nn.Module, data: Dataset, steps: int) -> list[float]:
    """The reference: one process, torch.optim.LBFGS over the whole training set, the engine's settings."""
    lbfgs = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=3, history_size=10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = nn.functional.cross_entropy(model(data.train.x), data.train.y)
        loss.backward()
        return loss

    return [float(lbfgs.step(closure).detach()) for _ in range(steps)]


def test_sandblaster_with_two_workers_follows_full_batch_lbfgs_step_for_step() -> None:
    # through the Ray executor, as `l2l search --workers-per-child 2 --data-parallel sandblaster` runs it
    import math

    from l2l.nas.data import load_dataset
    from l2l.nas.mlp import build_mlp
    from l2l.runs.executors import ChildTask, make_executor
    from l2l.search_spaces import Context, Spec, load_space

    space = load_space("mlp", {"epochs": 4})
    values = (("layers", "1"), ("width_0", "16"), ("act_0", "tanh"), ("width_1", "8"), ("act_1", "relu"))
    spec = Spec("mlp", (*values, ("width_2", "8"), ("act_2", "relu"), ("dropout", "0.0"), ("lr", "0.001")))
    options = {"work_units": 7, "lbfgs_iters": 3}
    executor = make_executor(
        "ray", options={"workers_per_child": 2, "data_parallel": "sandblaster", "dp_options": options}
    )
    executor.submit(space, ChildTask(0, spec, Context(seed=1)))
    _, result = executor.next_result()
    executor.shutdown()
    assert result.ok, result.error
    record = result.info["data_parallel"]

    data = load_dataset("digits")  # the same network, one process, the whole training set at once
    torch.manual_seed(1)
    model = build_mlp(math.prod(data.input_shape), data.n_classes, space.layout(spec))  # type: ignore[attr-defined]
    losses = _full_batch_lbfgs(model, data, steps=4)
    assert list(result.curves["train_loss"]) == pytest.approx(losses, abs=1e-5)
    val = nn.functional.cross_entropy(model(data.val.x), data.val.y).item()
    assert result.val_loss == pytest.approx(val, abs=1e-5)
    assert losses[-1] < 0.5 * losses[0]  # it did learn
    assert record["mode"] == "sandblaster" and record["workers"] == 2 and len(record["nodes"]) == 1
    assert record["work_units"] == 7 and record["evaluations"] >= 4 and record["examples_per_s"] > 0
    assert record["backups"] > 0  # the last shards got backup copies, and the first copy back was used
    assert record["examples"] == record["evaluations"] * len(data.train) == record["epoch_examples"][-1]


def test_downpour_with_one_replica_fetching_and_pushing_every_step_is_plain_adagrad() -> None:
    data = _data()
    config = TrainConfig(epochs=2, lr=0.05, batch_size=32, stop_hopeless=False)
    parallel = DataParallel(mode="downpour", workers=1, shards=2, unit_batches=3, server_lr=0.05)
    engine = engine_for(parallel)
    with use_engine(engine), recording() as rec:
        out = train_classifier(_model(), data, config, seed=2)
    plain = train_classifier(_model(), data, config, seed=2, optimizer_factory=lambda p, lr: torch.optim.Adagrad(p, lr))
    for key in ("train_loss", "val_loss", "val_acc"):
        assert out.curves[key] == pytest.approx(plain.curves[key], abs=1e-5), key
    record = engine.record()
    assert record["staleness_max"] == 0 and record["shards"] == 2
    assert (record["server_optimizer"], record["server_lr"]) == ("adagrad", 0.05)  # "auto" resolved
    assert rec.examples == 2 * len(data.train)


def test_downpour_serves_with_the_childs_own_optimizer_when_it_brings_one() -> None:
    # an optimizer search's child trains with the rule it scores: the servers must apply that rule, not Adagrad
    data = _data()
    config = TrainConfig(epochs=2, lr=0.05, batch_size=32, stop_hopeless=False)
    own = lambda p, lr: torch.optim.SGD(p, lr, momentum=0.9)  # noqa: E731
    engine = engine_for(DataParallel(mode="downpour", workers=1, shards=2, unit_batches=3))
    with use_engine(engine):
        out = train_classifier(_model(), data, config, seed=2, optimizer_factory=own)
    plain = train_classifier(_model(), data, config, seed=2, optimizer_factory=own)
    assert out.curves["val_loss"] == pytest.approx(plain.curves["val_loss"], abs=1e-5)
    assert engine.record()["server_optimizer"] == "child"  # what the record says ran


def test_sandblaster_refuses_what_lbfgs_over_shards_cannot_train() -> None:
    data = _data()
    config = TrainConfig(epochs=1, lr=0.05, batch_size=32, stop_hopeless=False)
    own = lambda p, lr: torch.optim.SGD(p, lr)  # noqa: E731
    with (
        use_engine(engine_for(DataParallel(mode="sandblaster", workers=2))),
        pytest.raises(DataParallelError, match="cannot score the child's own optimizer"),
    ):
        train_classifier(_model(), data, config, seed=2, optimizer_factory=own)
    bn = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4))
    with (
        use_engine(engine_for(DataParallel(mode="sandblaster", workers=2))),
        pytest.raises(DataParallelError, match="batch norm"),
    ):
        train_classifier(bn, data, config, seed=2)


def test_a_downpour_child_survives_losing_a_replica_and_a_shard_and_records_it() -> None:
    data = _data(480)
    config = TrainConfig(epochs=3, lr=0.05, batch_size=16, stop_hopeless=False)
    parallel = DataParallel(mode="downpour", workers=2, shards=2, unit_batches=2, snapshot_every=2, n_fetch=2)
    engine = engine_for(parallel)
    thread, box = _train_in_background(engine, data, config, seed=5)
    deadline = time.monotonic() + 60
    _wait_for(lambda: engine.units_done >= 6, deadline)
    ray.kill(engine.replicas[0], no_restart=True)
    _wait_for(lambda: engine.units_done >= 14, deadline)
    ray.kill(engine.shards[1], no_restart=True)
    thread.join(timeout=90)
    assert not thread.is_alive()
    out = box["out"]
    record = engine.record()
    assert record["event_counts"].get("replica_replaced") == 1, record["events"]
    assert record["event_counts"].get("shard_restored") == 1, record["events"]
    assert out.curves["train_loss"][-1] < out.curves["train_loss"][0]  # type: ignore[attr-defined]
    assert len(out.curves["val_acc"]) == 3  # type: ignore[attr-defined]


def test_a_sandblaster_worker_that_dies_is_replaced_and_the_steps_stay_those_of_lbfgs() -> None:
    data = _data(480)
    config = TrainConfig(epochs=5, stop_hopeless=False)
    engine = engine_for(DataParallel(mode="sandblaster", workers=2, work_units=6, lbfgs_iters=3))
    thread, box = _train_in_background(engine, data, config, seed=1)
    _wait_for(lambda: engine.evaluations >= 3, time.monotonic() + 60)
    ray.kill(engine.workers[0], no_restart=True)
    thread.join(timeout=90)
    assert not thread.is_alive()
    record = engine.record()
    assert record["event_counts"].get("worker_replaced") == 1, record["events"]

    losses = _full_batch_lbfgs(_model(), data, steps=5)
    assert box["out"].curves["train_loss"] == pytest.approx(losses, abs=1e-5)  # type: ignore[attr-defined]


def test_a_sandblaster_shard_with_dropout_does_not_depend_on_the_worker_that_computes_it() -> None:
    """Two runs with one seed gave rewards 0.100 and 0.260: a shard's dropout masks came from whichever worker
    (or backup copy) computed it."""
    from l2l.runs.sandblaster import GradientWorker

    data = _data()
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.5), nn.Linear(16, 4))
    flat = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    here, there = GradientWorker(model, data.train, seed=7), GradientWorker(model, data.train, seed=7)
    torch.manual_seed(11)  # the workers' histories differ
    first = here.shard(flat, 0, 60, evaluation=2)
    torch.rand(5)
    second = there.shard(flat, 0, 60, evaluation=2)
    assert first[0] == second[0] and (first[1] == second[1]).all()
    other = here.shard(flat, 0, 60, evaluation=3)  # another evaluation draws other masks: still dropout
    assert other[0] != first[0]
    largest = GradientWorker(model, data.train, seed=2**31 - 2)  # a child's seed can be up to 2**31 - 2
    assert largest.shard(flat, 60, 120, evaluation=10_000)[3] == 60


def test_a_shard_applies_pushes_with_its_optimizer_and_drops_those_staler_than_the_bound() -> None:
    from l2l.nas.distbelief import optimizer_by_name
    from l2l.runs.downpour import ParameterShard

    shard = ParameterShard(torch.zeros(3), optimizer_by_name("sgd"), 0.5, 0.0)  # the class, without Ray
    one = torch.ones(3).numpy()
    assert shard.push(one, 0, 1) == (0, True) and shard.push(one, 0, 1) == (1, True)
    assert shard.push(one, 0, 1) == (2, False)  # computed 2 updates ago: dropped
    values, version = shard.fetch()
    assert version == 2 and values.tolist() == [-1.0, -1.0, -1.0]
    snap = shard.snapshot()
    shard.push(one, 2, None)
    shard.restore(snap)
    assert shard.fetch()[1] == 2 and shard.fetch()[0].tolist() == [-1.0, -1.0, -1.0]


def test_a_server_without_a_set_rate_uses_its_optimizers_own_default_not_the_childs() -> None:
    assert server_learning_rate("adagrad", 1e-3) == pytest.approx(torch.optim.Adagrad([torch.zeros(1)]).defaults["lr"])
    assert server_learning_rate("Adagrad", 1e-3) == pytest.approx(0.01)
    assert server_learning_rate("sgd", 0.3) == pytest.approx(torch.optim.SGD([torch.zeros(1)]).defaults["lr"])
    assert server_learning_rate("child", 0.3) == 0.3
    with pytest.raises(ValueError, match="unknown server optimizer 'nope'"):
        server_learning_rate("nope", 0.3)


def test_bad_settings_name_the_value_and_what_is_valid() -> None:
    with pytest.raises(DataParallelError, match="known: sync, downpour, sandblaster"):
        DataParallel(mode="hogwild")
    with pytest.raises(DataParallelError, match="unknown server optimizer 'adagradd'"):
        DataParallel(mode="downpour", server_optimizer="adagradd")
    for name in ("lbfgs", "SparseAdam", "muon"):  # accepted, then every child failed (LBFGS wants a closure)
        with pytest.raises(DataParallelError, match=f"server optimizer '{name}' cannot serve pushed gradients: "):
            DataParallel(mode="downpour", server_optimizer=name)
    with pytest.raises(DataParallelError, match="unknown data-parallel option 'shard'"):
        DataParallel.parse("downpour", 2, {"shard": "2"})
    with pytest.raises(DataParallelError, match=r"^data-parallel option n_fetch must be an integer, got 'x'$"):
        DataParallel.parse("downpour", 2, {"n-fetch": "x"})
    with pytest.raises(DataParallelError, match=r"option shards must be an integer, got 2.5$"):  # was cut to 2
        DataParallel.parse("downpour", 2, {"shards": 2.5})
    assert DataParallel.parse("downpour", 2, {"shards": 2.0}).shards == 2  # TOML's 2.0, as elsewhere
    unset = DataParallel.parse("downpour", 2, {"max_staleness": "none", "server_lr": "none"})  # the defaults, said
    assert unset.max_staleness is None and unset.server_lr is None
    assert DataParallel.parse("downpour", 2, {"n_fetch": 3, "slow": "1,3"}).slow == (1.0, 3.0)
    # an option of another mode, or more slow factors than workers, would be ignored: refused
    with pytest.raises(DataParallelError, match="option shards applies to --data-parallel downpour, not sync"):
        DataParallel.parse("sync", 2, {"shards": 2})
    with pytest.raises(DataParallelError, match="option lbfgs_iters applies to --data-parallel sandblaster, not"):
        DataParallel.parse("downpour", 2, {"lbfgs_iters": 3})
    with pytest.raises(DataParallelError, match="slow gives 3 factors for 2 worker"):
        DataParallel.parse("downpour", 2, {"slow": "1,1,1"})


def test_the_cli_offers_the_modes_and_an_unknown_one_fails_before_any_child() -> None:
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.runs.executors import ExecutorError, make_executor

    shown = " ".join(CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "400"}).output.split())
    assert "--data-parallel" in shown and "sandblaster" in shown and "--dp-option" in shown
    with pytest.raises(ExecutorError, match="unknown --data-parallel 'hogwild'; known: sync, downpour, sandblaster"):
        make_executor("ray", options={"workers_per_child": 2, "data_parallel": "hogwild"})
    with pytest.raises(ExecutorError, match="--dp-option sets how a child's workers train it together; add"):
        make_executor("ray", options={"dp_options": {"shards": 2}})


def test_a_child_whose_space_trains_without_the_loops_is_said_to_have_trained_in_one_process() -> None:
    from l2l.runs.distbelief import DataParallel
    from l2l.runs.ray_worker import untrained_notice
    from l2l.search_spaces import Result, load_space

    space = load_space("toy")
    idle = Result(reward=1.0, info={"data_parallel": {"mode": "sync", "workers": 2, "examples": 0, "train_s": 0.0}})
    trained = Result(reward=1.0, info={"data_parallel": {"mode": "sync", "workers": 2, "train_s": 1.5}})
    notice = untrained_notice(space, idle, DataParallel(mode="sync", workers=2))
    assert notice == (
        "space 'toy' does not train with l2l's training loops: --workers-per-child 2 --data-parallel sync "
        "trained each child in one process"
    )
    assert untrained_notice(space, trained, DataParallel(mode="sync", workers=2)) is None
    assert untrained_notice(space, idle, DataParallel(mode="sync", workers=1)) is None
