"""GPU scheduling of the Ray executor: fractional GPUs let several children share one device.

The Ray instance declares one GPU; on a machine without CUDA it is a logical resource only, so
this checks Ray's assignment (which child got which GPU, how many at once) and the device choice.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from l2l.runs.executors import ChildTask, make_executor
from l2l.runs.ray_executor import RayExecutor
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
