"""A cluster node lost mid-run: its children are retried on the nodes that are left."""

from __future__ import annotations

import time

import pytest

from l2l.runs.executors import ChildTask, make_executor
from l2l.search_spaces import Context, load_space
from tests.conftest import PLUGINS

ray = pytest.importorskip("ray")


def test_children_of_a_lost_node_are_retried_elsewhere() -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker_node = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        head_id = ray.get_runtime_context().get_node_id()
        space = load_space(f"{PLUGINS / 'spaces.py'}:Crashy", {"delay": 4.0})
        executor = make_executor("ray", options={"address": cluster.address, "max_retries": 3, "prefetch": 0})
        assert executor.capacity == 3
        for n in range(3):
            executor.submit(space, ChildTask(n, space.decode((0,)), Context(child=n)))
        time.sleep(2.0)  # all three are running: two of them on the second node
        cluster.remove_node(worker_node, allow_graceful=False)
        results = [executor.next_result() for _ in range(3)]
        assert all(r.ok for _, r in results), [r.error for _, r in results]
        assert {r.runtime["node"] for _, r in results} == {head_id}  # every child finished on the head
        executor.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()
