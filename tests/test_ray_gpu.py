"""GPU scheduling of the Ray executor: fractional GPUs let several children share one device.

The Ray instance declares one GPU; on a machine without CUDA it is a logical resource only, so
this checks Ray's assignment (which child got which GPU, how many at once) and the device choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from l2l.runs.executors import ChildTask, make_executor
from l2l.runs.ray_executor import RayExecutor
from l2l.runs.ray_worker import assigned_device
from l2l.runs.search import NoticeEvent, Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Context, load_space
from tests.conftest import PLUGINS

ray = pytest.importorskip("ray")
CRASHY = f"{PLUGINS / 'spaces.py'}:Crashy"


@pytest.fixture(scope="module", autouse=True)
def ray_with_one_gpu() -> Iterator[None]:
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_half_gpu_children_share_the_gpu_side_by_side() -> None:
    space = load_space(CRASHY, {"delay": 1.0})
    executor = make_executor("ray", options={"gpus_per_child": 0.5, "cpus_per_child": 0.25})
    assert isinstance(executor, RayExecutor)  # wait_ready is the Ray executor's own
    assert executor.capacity == 2  # the GPU, not the 8 quarter CPUs, bounds how many run at once
    executor.wait_ready(timeout=120)  # both worker processes up, so the first two children start together
    for n in range(4):
        executor.submit(space, ChildTask(n, space.decode((0,)), Context(child=n, device="cuda")))
    infos = [{**r.info, **r.runtime} for _, r in (executor.next_result() for _ in range(4))]
    executor.shutdown()
    assert all(i["gpu_ids"] == ["0"] for i in infos)  # both slots were given GPU 0
    spans = [(i["started"], i["finished"]) for i in infos]
    assert max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans) == 2  # two at a time on it, never more
    # CUDA when the assigned GPU is real; a child asking for CUDA on a machine without it runs on the CPU
    assert {i["device"] for i in infos} == {"cuda" if torch.cuda.is_available() else "cpu"}


@pytest.mark.parametrize(
    ("asked", "gpus", "cuda", "device", "noted"),
    [
        ("cpu", ["0"], True, "cuda", False),  # a child given a GPU trains on it
        ("cuda", ["0"], False, "cpu", True),  # a CPU-only torch under a GPU: on the CPU, and said
        ("cpu", ["1"], False, "cpu", True),  # reserved and unused is said even when the run asked for the CPU
        ("cuda", [], False, "cpu", True),
        ("cpu", [], False, "cpu", False),
    ],
)
def test_a_child_runs_where_ray_put_it_and_says_when_that_is_not_the_gpu(
    asked: str, gpus: list[str], cuda: bool, device: str, noted: bool
) -> None:
    asks: list[bool] = []

    def cuda_available() -> bool:
        asks.append(cuda)
        return cuda

    got, notice = assigned_device(asked, gpus, cuda_available)
    assert got == device and (notice is not None) == noted
    assert len(asks) == (1 if gpus or asked.startswith("cuda") else 0)  # torch is asked only when a GPU is involved
    if gpus and notice:
        assert f"GPU {gpus[0]}" in notice


def test_a_reserved_gpu_that_torch_cannot_use_is_said_once_per_run(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'gpu.db'}")
    config = SearchConfig(
        space="toy",
        strategy="random",
        children=4,
        batch=2,
        executor="ray",
        executor_options={"gpus_per_child": 0.5, "cpus_per_child": 0.25},
    )
    events: list[object] = []
    Search.start(store, config, listener=events.append).run()
    notices = [e.text for e in events if isinstance(e, NoticeEvent)]
    children = store.children(1)
    assert [c.status for c in children] == ["done"] * 4
    if torch.cuda.is_available():  # on a GPU machine the children use it, and nothing is said
        assert notices == [] and {c.device for c in children} == {"cuda"}
    else:
        assert len(notices) == 1 and "Ray assigned GPU 0, but torch has no CUDA" in notices[0], notices
        assert {c.device for c in children} == {"cpu"}
        # and `runs child` still says it after the terminal is gone (it showed only "device cpu")
        from l2l.runs.cli.child import child_lines

        assert f"note: {notices[0]}" in child_lines(store.get_run(1), children[0])
