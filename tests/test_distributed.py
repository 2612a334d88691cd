"""One child trained by two processes with torch.distributed follows the single-process run."""

from __future__ import annotations

from pathlib import Path

import pytest

from l2l.nas.train import collective_device
from l2l.runs.distributed import rank_devices, run_data_parallel
from l2l.runs.executors import ChildTask, run_child
from l2l.search_spaces import Context, Spec, load_space
from tests.conftest import PLUGINS


def _spec() -> Spec:
    values = (
        ("layers", "2"),
        ("width_0", "64"),
        ("act_0", "tanh"),
        ("width_1", "32"),
        ("act_1", "relu"),
        ("width_2", "8"),
        ("act_2", "relu"),
        ("dropout", "0.0"),  # dropout draws differ by process: the comparison needs none
        ("lr", "0.003"),
    )
    return Spec("mlp", values)


def test_two_processes_give_the_loss_curve_of_one_with_the_same_global_batch() -> None:
    space = load_space("mlp", {"epochs": 3})
    task = ChildTask(0, _spec(), Context(seed=5))
    one = run_child(space, task)
    two = run_data_parallel(space, task, 2)
    assert one.ok and two.ok, two.error
    assert two.runtime["workers_per_child"] == 2 and two.runtime["backend"] == "gloo"
    for key in ("train_loss", "val_loss", "val_acc"):
        assert two.curves[key] == pytest.approx(one.curves[key], rel=1e-4, abs=1e-5), key
    assert one.curves["val_loss"][-1] < one.curves["val_loss"][0]  # it did learn


@pytest.mark.parametrize(
    ("space_ref", "choice", "message"),
    [
        ("Flaky", "boom", "RuntimeError: child exploded on purpose"),  # raises: recorded with its reason
        ("Crashy", "exit", "died"),  # a process exits: the child fails, the caller goes on
    ],
)
def test_a_failing_process_fails_the_child_with_the_reason(space_ref: str, choice: str, message: str) -> None:
    space = load_space(f"{PLUGINS / 'spaces.py'}:{space_ref}")
    spec = Spec(space.name, (("x", choice),))
    result = run_data_parallel(space, ChildTask(1, spec, Context()), 2)
    assert result.status == "failed" and message in (result.error or "")


@pytest.mark.parametrize(
    ("world", "gpus", "backend", "devices"),
    [
        (2, 0, "gloo", ["cpu", "cpu"]),  # no GPU: the CPU
        (2, 2, "nccl", ["cuda:0", "cuda:1"]),  # a GPU per rank: NCCL
        (2, 1, "gloo", ["cuda:0", "cuda:0"]),  # --workers-per-child 2 --gpus-per-child 0.5: the reserved GPU, shared
        (4, 2, "gloo", ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]),
    ],
)
def test_ranks_use_the_gpus_reserved_for_the_child(world: int, gpus: int, backend: str, devices: list[str]) -> None:
    assert rank_devices(world, gpus) == (backend, devices)


def test_values_are_all_reduced_on_the_training_device_under_nccl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        gpu = torch.device("cuda", 1)  # a device object needs no CUDA
        assert collective_device(gpu) == torch.device("cpu")  # gloo reduces CPU tensors
        monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "nccl")
        assert collective_device(gpu) == gpu  # NCCL reduces only CUDA ones: a CPU tensor would fail the first batch
    finally:
        dist.destroy_process_group()


def test_a_sync_child_spreads_its_replicas_over_two_nodes_of_a_cluster_and_follows_one_process() -> None:
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from l2l.nas.data import load_dataset
    from l2l.runs.executors import make_executor

    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        space = load_space("mlp", {"epochs": 2})
        task = ChildTask(0, _spec(), Context(seed=5))
        one = run_child(space, task)
        executor = make_executor("ray", options={"workers_per_child": 2, "data_parallel": "sync"})
        executor.submit(space, task)
        _, result = executor.next_result()
        executor.shutdown()
        assert result.ok, result.error
        record = result.info["data_parallel"]
        assert record["mode"] == "sync" and record["workers"] == 2 and record["backend"] == "gloo"
        assert set(record["nodes"]) == nodes and len(set(record["rank_nodes"])) == 2, record  # one on each node
        assert record["examples"] == 2 * len(load_dataset("digits").train) and record["examples_per_s"] > 0
        for key in ("train_loss", "val_loss", "val_acc"):  # across machines it still follows one process
            assert result.curves[key] == pytest.approx(one.curves[key], rel=1e-4, abs=1e-5), key
    finally:
        ray.shutdown()
        cluster.shutdown()
