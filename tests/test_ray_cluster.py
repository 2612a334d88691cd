"""Clusters as a user runs them: a node lost mid-run, a head started with `ray start` and token authentication on,
joined and then lost."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from l2l.runs.executors import ChildTask, make_executor
from l2l.runs.ray_executor import RayExecutor
from l2l.runs.store import Store
from l2l.search_spaces import Context, load_space
from tests.conftest import PLUGINS

ray = pytest.importorskip("ray")


def test_children_of_a_lost_node_run_again_elsewhere_at_once_and_count_their_attempts() -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker_node = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        head_id = ray.get_runtime_context().get_node_id()
        space = load_space(f"{PLUGINS / 'spaces.py'}:Crashy", {"delay": 0.6})
        executor = make_executor("ray", options={"address": cluster.address, "max_retries": 3})
        assert executor.capacity == 3
        assert isinstance(executor, RayExecutor) and executor.wait_ready(timeout=120) >= 0
        for n in range(24):  # a child running on each slot, one waiting behind it, the rest queued
            executor.submit(space, ChildTask(n, space.decode((0,)), Context(child=n)))
        time.sleep(0.3)  # the first children run: two of them on the second node
        cluster.remove_node(worker_node, allow_graceful=False)
        results = [executor.next_result() for _ in range(24)]
        assert all(r.ok for _, r in results), [r.error for _, r in results]
        assert sorted(t.number for t, _ in results) == list(range(24))  # each exactly once
        late = {r.runtime["node"] for _, r in results[-10:]}
        assert late == {head_id}  # the last ones ran on the head, the only node left
        retried = [i for i, (_, r) in enumerate(results) if r.runtime.get("retries")]
        assert retried, "no child was running on the lost node"
        # run again at once, not after every other child: they finish before the run's last ten
        assert max(retried) < len(results) - 10, retried
        executor.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _home(root: Path, name: str, token: str | None) -> dict[str, str]:
    """The environment of a user whose home holds ``token`` as Ray's (none: no token), RAY_AUTH_MODE unset."""
    home = root / name
    (home / ".ray").mkdir(parents=True)
    if token is not None:
        (home / ".ray" / "auth_token").write_text(token)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "L2L_LOG_DIR"}  # in HOME
    return {**env, "HOME": str(home), "COLUMNS": "300", "OMP_NUM_THREADS": "1"}


@contextmanager
def _head(env: dict[str, str]) -> Iterator[str]:
    """A Ray head started as a user starts one, `ray start --head`, with token authentication on."""
    temp = Path(tempfile.mkdtemp(prefix="l2lh", dir="/tmp"))  # short: Ray's socket paths must fit
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=1",
        f"--temp-dir={temp}",
    ]
    args += ["--include-dashboard=false", "--disable-usage-stats"]
    try:
        subprocess.run(args, env={**env, "RAY_AUTH_MODE": "token"}, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop(temp: Path) -> None:
    """Kill the processes of the head that runs in ``temp`` (never `ray stop`: it stops every Ray here)."""
    import psutil

    procs = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(temp) in part for part in p.info["cmdline"] or []):
            procs += [p, *p.children(recursive=True)]
    for p in procs:
        with suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(procs, timeout=10)


def _search(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    l2l = [sys.executable, "-c", "from l2l.runs.cli import main; main()"]
    return subprocess.run([*l2l, "search", *args], env=env, capture_output=True, text=True, timeout=240)


def test_joining_a_cluster_with_token_authentication_and_losing_it(tmp_path: Path, postgres_url: str) -> None:
    # docs/cluster.md's recipe on one machine: `ray start --head` with a token, the store on PostgreSQL in
    # L2L_STORAGE, `l2l search --address`; then the head is lost, and the run moves to another one
    token = "0123456789abcdef" * 4
    store = postgres_url
    user = {**_home(tmp_path, "user", token), "L2L_STORAGE": store}
    with _head(user) as address:
        base = ["--address", address, "--space", "toy", "--strategy", "random", "-q"]
        # the token is on this machine: used, and said, with none of Ray's retry warnings
        joined = _search(user, *base, "-n", "3")
        assert joined.returncode == 0, joined.stderr
        assert "children run on the Ray cluster at " in joined.stdout
        assert "1 node(s), 1 CPU; token authentication on" in joined.stdout
        assert "InvalidAuthToken" not in joined.stdout + joined.stderr
        assert "Token authentication is enabled" not in joined.stdout + joined.stderr  # Ray's banner: in its log
        first = int(re.search(r"run (\d+) done: 3 children trained", joined.stdout)[1])  # type: ignore[index]
        logs = list((Path(user["HOME"]) / ".cache" / "l2l" / "logs").glob(f"test-*/run-{first}/ray-*.log"))
        assert len(logs) == 1 and "InvalidAuthToken" in logs[0].read_text()  # the refused first try, kept there
        # no token, or another one: one line that says what to set, at once
        for name, other, says in [("none", None, "this machine has no token"), ("other", "f" * 64, "refused")]:
            refused = _search({**_home(tmp_path, name, other), "L2L_STORAGE": store}, *base, "-n", "3")
            error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
            assert refused.returncode == 1 and len(error) == 1 and says in error[0], refused.stderr
            assert "~/.ray/auth_token here" in error[0] and "InvalidAuthToken" not in refused.stderr
        # the user turned Ray's authentication off here: that is what to change
        off = {**_home(tmp_path, "off", token), "L2L_STORAGE": store, "RAY_AUTH_MODE": "disabled"}
        refused = _search(off, *base, "-n", "3")
        error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode == 1 and len(error) == 1, refused.stderr
        assert "uses token authentication, and RAY_AUTH_MODE=disabled here turns it off" in error[0]
        # the cluster goes away mid-run: one line, and the run is not left `running`
        sleepy = ["--space", f"{PLUGINS / 'spaces.py'}:Sleepy", "-S", "delay=1.5", "-n", "8", "--strategy", "random"]
        l2l = [sys.executable, "-c", "from l2l.runs.cli import main; main()", "search"]
        driver = subprocess.Popen(
            [*l2l, "--address", address, *sleepy, "-q"],
            env=user,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        db = Store(store)
        newest = lambda: db.list_runs(1)[0].id  # noqa: E731
        _wait_for(lambda: newest() != first and db.count_children(newest())["done"] >= 2, driver)
        slow = newest()
    out, err = driver.communicate(timeout=120)  # the head was stopped on leaving the block
    assert driver.returncode == 1, (out, err)
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: the Ray cluster at {address} went away (its head stopped answering); the run can be resumed on "
        "another cluster with --resume and --address HOST:PORT"
    ], err
    # the next line names the run and the command (the store is $L2L_STORAGE's, so no --storage)
    assert (
        f"run {slow} keeps what it recorded; once the cause is fixed, continue it with `l2l search --resume {slow} "
        "--address HOST:PORT`" in " ".join(err.split())
    ), err
    assert db.get_run(slow).status == "failed"
    # ... and it moves to another cluster on resume, which it records
    with _head(user) as other:
        moved = _search(user, "--resume", str(slow), "--address", other, "-q")
    assert moved.returncode == 0, moved.stderr
    assert f"run {slow} moved: address {address} -> {other}" in moved.stdout
    run = db.get_run(slow)
    assert run.status == "done" and run.config["executor_options"]["address"] == other
    assert [m["to"] for m in run.config["moves"]] == [{"address": other}]
    children = db.children(slow)
    assert [c.number for c in children] == list(range(8)) and {c.status for c in children} == {"done"}
    assert any(c.attempts > 1 for c in children)  # those in flight when the head went: run again, counted


def test_a_run_whose_cluster_is_gone_resumes_on_an_embedded_instance_and_records_the_move(tmp_path: Path) -> None:
    # no head to start: the cluster of the run's record is gone, and the user has only this machine
    from l2l.runs.search_config import SearchConfig

    url = f"sqlite:///{tmp_path / 'gone.db'}"
    store = Store(url)
    gone = "127.0.0.1:9"
    options = {"address": gone}
    config = SearchConfig(space="toy", strategy="random", children=3, executor="ray", executor_options=options)
    run = store.create_run(
        space="toy", strategy="random", config=config.to_json(), seed=0, n_children=3, code_version="x"
    )
    store.set_run_status(run, "failed", f"the Ray cluster at {gone} went away")
    env = _home(tmp_path, "user", None)
    moved = _search(env, "--resume", str(run), "--address", "embedded", "-q", "--storage", url)
    assert moved.returncode == 0, moved.stderr
    assert f"run {run} moved: address {gone} -> embedded" in moved.stdout
    assert store.get_run(run).status == "done" and store.count_children(run)["done"] == 3
    assert [m["to"] for m in store.get_run(run).config["moves"]] == [{"address": "embedded"}]


def _wait_for(condition: Callable[[], bool], driver: subprocess.Popen[str], timeout: float = 120) -> None:
    until = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None and time.monotonic() < until, driver.communicate()
        time.sleep(0.5)


def test_address_auto_refuses_the_ray_instance_another_process_started(tmp_path: Path) -> None:
    temp = Path(tempfile.mkdtemp(prefix="l2la", dir="/tmp"))
    env = _home(tmp_path, "user", None)  # its ray.init() writes the token there, as on a first run
    code = (
        f"import ray, time; ray.init(num_cpus=1, include_dashboard=False, _temp_dir={str(temp)!r}); "
        "print(ray.get_runtime_context().gcs_address, flush=True); time.sleep(300)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        address = holder.stdout.readline().strip()
        store = f"sqlite:///{tmp_path / 'runs.db'}"
        # which instance `auto` finds depends on what runs on the machine; RAY_ADDRESS makes it this one
        auto = {**env, "RAY_ADDRESS": address}
        refused = _search(auto, "--address", "auto", "--space", "toy", "-n", "2", "-q", "--storage", store)
        error = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode == 1 and len(error) == 1, refused.stderr
        assert f"--address auto found {address}, a Ray instance that ray.init() started inside another" in error[0]
        assert "ray start --head" in error[0]
    finally:
        holder.kill()
        holder.wait()
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)
