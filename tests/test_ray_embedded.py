"""An embedded Ray instance (no --address): secrets stay out of child code, and it leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from l2l.runs.executors import ChildTask, make_executor
from l2l.runs.ray_cluster import sweep_embedded
from l2l.runs.ray_executor import RayExecutor
from l2l.runs.secrets import secret_names
from l2l.search_spaces import Context, load_space
from tests.conftest import PLUGINS

ray = pytest.importorskip("ray")
PASSWORD = "s3cret-pw-20"


def test_secrets_are_recognised_by_name_and_by_a_password_in_a_url() -> None:
    env = {
        "L2L_STORAGE": "sqlite:///l2l.db",  # the store's URL, even without a password
        "PGPASSWORD": "x",
        "MY_DB": f"postgresql+psycopg://l2l:{PASSWORD}@db:5432/l2l",
        "L2L_CIFAR10_ROOT": "/data/cifar",  # what children need stays
        "HOME": "/root",
        "URL": "https://example.org/a:b@c",  # a colon and an at sign in a path are no password
    }
    assert secret_names(env) == ["L2L_STORAGE", "MY_DB", "PGPASSWORD"]


def test_children_of_an_embedded_instance_never_see_the_store_url_and_it_leaves_no_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if ray.is_initialized():
        pytest.skip("a Ray instance is already up in this process")
    url = f"postgresql+psycopg://l2l:{PASSWORD}@db.example:5432/l2l"
    monkeypatch.setenv("L2L_STORAGE", url)
    monkeypatch.setenv("OTHER_DB_URL", url)
    monkeypatch.setenv("L2L_CIFAR10_ROOT", "/data/cifar")
    space = load_space(f"{PLUGINS / 'spaces.py'}:EnvProbe")
    executor = make_executor("ray", options={"num_cpus": 1})
    assert isinstance(executor, RayExecutor)
    assert executor.where.startswith("children run on an embedded Ray instance: 1 node(s), 1 CPU")
    executor.submit(space, ChildTask(0, space.decode((0,)), Context()))
    _, result = executor.next_result()
    session = ray._private.worker._global_node.get_session_dir_path()
    executor.shutdown()
    assert result.ok, result.error
    environ, parent = result.info["environ"], result.info["parent_environ"]
    assert "L2L_STORAGE" not in environ and "OTHER_DB_URL" not in environ
    assert PASSWORD not in "".join(environ.values()) and PASSWORD not in parent  # nor in the raylet's
    assert environ["L2L_CIFAR10_ROOT"] == "/data/cifar"
    assert os.environ["L2L_STORAGE"] == url  # the driver keeps its own
    assert not Path(session).exists()  # the embedded instance's files went with it


def test_an_embedded_instance_that_cannot_hold_a_child_is_stopped_and_leaves_no_files() -> None:
    if ray.is_initialized():
        pytest.skip("a Ray instance is already up in this process")
    from l2l.runs.executors import ExecutorError
    from l2l.runs.ray_cluster import EMBEDDED_PREFIX

    before = set(Path(tempfile.gettempdir()).glob(f"{EMBEDDED_PREFIX}*"))
    with pytest.raises(ExecutorError, match=r"one child needs 4 CPU"):
        make_executor("ray", options={"num_cpus": 1, "cpus_per_child": 4.0})
    assert not ray.is_initialized()
    assert set(Path(tempfile.gettempdir()).glob(f"{EMBEDDED_PREFIX}*")) <= before


def test_directories_of_embedded_instances_whose_driver_died_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / "l2l-ray-gone"
    (gone / f"session_2026-12-02_10-00-00_000001_{dead.stdout.strip()}").mkdir(parents=True)
    live = tmp_path / "l2l-ray-live"
    (live / f"session_2026-12-02_10-00-00_000001_{os.getpid()}").mkdir(parents=True)
    other = tmp_path / "not-ours"
    (other / f"session_2026-12-02_10-00-00_000001_{dead.stdout.strip()}").mkdir(parents=True)
    session = next(gone.iterdir())
    # a process that holds a file of a session open and ignores SIGTERM, as Ray's agents do; named like one
    # of them (ray::...) it is Ray's, otherwise (a `tail -f` of an old log, named raylet.out) it is not
    holder = "import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nf = open(sys.argv[1], 'w')\n"
    holder += "print('up', flush=True)\ntime.sleep(60)\n"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "agent.py").write_text("open('/proc/self/comm', 'w').write('ray::TestAgent')\n" + holder)
    (tmp_path / "tail.py").write_text(holder)

    def hold(script: Path, file: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(script), str(file)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        return proc

    agent = hold(tmp_path / "ray" / "agent.py", session / "a.log")
    others = [hold(tmp_path / "tail.py", session / "raylet.out"), hold(tmp_path / "ray" / "agent.py", live / "c.log")]
    try:
        assert sweep_embedded(str(tmp_path)) == [gone]
        assert live.exists() and other.exists() and not gone.exists()
        assert agent.wait(timeout=10) == -9  # killed: it ignores SIGTERM, as Ray's agents did
        assert [p.poll() for p in others] == [None, None]  # not Ray's; a live instance's: both left alone
    finally:
        for proc in [agent, *others]:
            proc.kill()
            proc.wait()


STOP_WHILE_RAY_STARTS = """
import os, signal, sys, threading

import ray

from l2l.runs.ray_cluster import connect

def mine(signum, frame):
    print(f"the driver's handler ran; Ray up: {ray.is_initialized()}", flush=True)
    sys.exit(143)

def init_then_stop(*args, **kwargs):  # a SIGTERM that arrives while Ray starts (which takes seconds)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    return real_init(*args, **kwargs)

signal.signal(signal.SIGTERM, mine)
real_init, ray.init = ray.init, init_then_stop
connect(None, 1)
print("not stopped", flush=True)
"""


def test_a_sigterm_while_ray_starts_reaches_the_drivers_handler_once_ray_is_up() -> None:
    """Ray replaced the driver's SIGTERM handler with sys.exit(15) and a C++ stack dump, and a stop that cut its
    start short crashed the process on exit: exit 15, 134 or 139 where a scheduler's SIGTERM should stop a search."""
    done = subprocess.run([sys.executable, "-c", STOP_WHILE_RAY_STARTS], capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 143 and "the driver's handler ran; Ray up: True" in out, out
    assert "not stopped" not in out and "SIGTERM received" not in out and "Traceback" not in out, out


SIGTERM_WHILE_RAY_WAITS = """
import os, signal, threading, time

import ray

from l2l.runs.driver import as_stop, stop_on_sigterm, stop_reason, stop_signal
from l2l.runs.ray_cluster import connect

stop_on_sigterm()
connect(None, 1)

@ray.remote
def slow():
    time.sleep(60)

threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
try:
    ray.get(slow.remote())
except KeyboardInterrupt as exc:
    stop = as_stop(exc)
    print(type(exc).__name__, stop_signal(stop), stop_reason(stop), flush=True)
    print("then Ctrl-C:", stop_signal(as_stop(KeyboardInterrupt())), flush=True)  # read once: not SIGTERM again
"""


def test_a_sigterm_while_ray_waits_for_a_child_is_still_told_apart_from_ctrl_c() -> None:
    """Ray checks signals in C++ while it waits and raises a plain KeyboardInterrupt for whatever the handler
    raised: a scheduler's SIGTERM was recorded as the user's Ctrl-C and the search exited 130, not 143."""
    done = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_RAY_WAITS], capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert f"KeyboardInterrupt {int(signal.SIGTERM)} stopped by SIGTERM" in out, out  # plain, as Ray raised it
    assert f"then Ctrl-C: {int(signal.SIGINT)}" in out, out
