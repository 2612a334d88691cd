"""Both built-in executors pass the executor contract of `l2l.testing.executors`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from l2l.runs.executors import Executor, LocalExecutor
from l2l.testing.executors import ExecutorContract


@pytest.fixture(scope="module")
def ray() -> Iterator[Any]:
    """One small local Ray instance for the module, on free ports (never a cluster another process started)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


class TestLocalExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self) -> Iterator[Executor]:
        executor = LocalExecutor()
        yield executor
        executor.shutdown()


class TestRayExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self, ray: Any) -> Iterator[Executor]:
        from l2l.runs.ray_executor import RayExecutor

        executor = RayExecutor(max_concurrent=2)
        yield executor
        executor.shutdown()

    def assert_stopped(self, executor: Executor) -> None:
        super().assert_stopped(executor)
        import ray

        from l2l.runs.ray_executor import RayExecutor

        assert isinstance(executor, RayExecutor)
        assert not executor._scheduler.slots and not executor._workers.actors
        # every worker process was killed: the CPUs its actors held come back to the instance
        deadline = time.monotonic() + 120
        while ray.available_resources().get("CPU", 0.0) < ray.cluster_resources()["CPU"]:
            assert time.monotonic() < deadline, f"Ray still holds CPUs: {ray.available_resources()}"
            time.sleep(0.1)


def test_the_search_path_never_imports_the_contract_suites_or_pytest() -> None:
    code = (
        "import sys, l2l.runs.search, l2l.runs.ray_executor, l2l.runs.scheduling; "
        "print(sorted(m for m in sys.modules if m.startswith(('l2l.testing', 'pytest', '_pytest'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"
