"""Serving the dashboard: uvicorn on 127.0.0.1 by default, and a dashboard process beside a search."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def bind_warning(host: str) -> str | None:
    """The one-line warning for a host other than this machine's loopback, or None."""
    if host in LOCAL_HOSTS:
        return None
    return (
        f"warning: the dashboard listens on {host}, not only on this machine: anyone who can reach it reads every "
        "run in the store (it has no login); use --host 127.0.0.1 and an SSH tunnel instead"
    )


def url_of(host: str, port: int) -> str:
    """The address to open in a browser."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _exit_with(parent: int, server: Any) -> None:
    """Stop ``server`` once process ``parent`` is gone (a dashboard beside a search ends with it, even on kill -9)."""
    while not server.should_exit:
        if os.getppid() != parent:
            server.should_exit = True
            return
        time.sleep(1.0)


def serve(storage: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, exit_with: int | None = None) -> None:
    """Serve the dashboard of ``storage`` until interrupted (or until process ``exit_with`` ends); says where once
    the store is open (a dashboard beside a search says nothing: the search prints its address)."""
    import uvicorn

    from l2l.runs.dashboard.app import create_app

    app = create_app(storage)
    behind = schema_behind(app.state.reader.revision)
    if behind:
        print(behind, file=sys.stderr)
    sock = listening_socket(host, port)  # before saying where: a port that is taken is one error line
    if exit_with is None:
        print(f"l2l dashboard at {url_of(host, port)} (Ctrl-C stops it)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    if exit_with is not None:
        threading.Thread(target=_exit_with, args=(exit_with, server), daemon=True).start()
    server.run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for the server, or `UsageError` naming why it cannot be."""
    from l2l.runs.config import UsageError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        import errno

        # the port is taken, or the host is not an address of this machine (or not one at all)
        fix = "choose another --port" if exc.errno == errno.EADDRINUSE else "--host must be an address of this machine"
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {fix}") from None
    return sock


def schema_behind(revision: str | None) -> str | None:
    """A one-line warning when the store's schema is not this l2l's (the dashboard never migrates it)."""
    from l2l.runs.store_engine import schema_head, schema_revisions

    head = schema_head()
    if revision == head:
        return None
    if revision is not None and revision not in schema_revisions():
        return (
            f"warning: a newer l2l wrote this store (schema revision {revision}, which this l2l, at {head}, does not "
            "know); pages may fail to read it: upgrade l2l"
        )
    return (
        f"warning: the store's schema is at revision {revision or 'none'}, this l2l's at {head}; the dashboard only "
        "reads, so it leaves it so: any other l2l command on the store (e.g. `l2l runs list`) upgrades it, and adds "
        "the indexes that keep big runs fast"
    )


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers(host: str, port: int) -> bool:
    """Whether something accepts connections at host:port."""
    try:
        with socket.create_connection(("127.0.0.1" if host in ("0.0.0.0", "") else host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Beside:
    """A dashboard process started next to a search; `stop` ends it."""

    process: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        """End the dashboard (it also ends by itself when the search's process does)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


BESIDE_ENV = "L2L_DASHBOARD_STORAGE"  # the store of a dashboard a search started beside it


def start_beside(storage: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, wait_s: float = 20.0) -> Beside:
    """Start `l2l dashboard` on ``storage`` in a process of its own (it never takes the search's CPU time or
    its GIL) and wait until it answers; a port of 0 takes a free one. `RuntimeError` says why it did not start."""
    if port == 0:
        port = free_port(host)
    if answers(host, port):
        raise RuntimeError(f"port {port} on {host} is taken; choose another with --dashboard-port (0: any free port)")
    code = "from l2l.runs.cli import main; main()"
    args = ["dashboard", "--host", host, "--port", str(port), "--exit-with", str(os.getpid())]
    env = {**os.environ, BESIDE_ENV: storage}  # never on the command line, where `ps` shows a password
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = (process.stderr.read() if process.stderr else b"").decode(errors="replace").strip()
            raise RuntimeError(f"the dashboard did not start: {err.splitlines()[-1] if err else 'no reason given'}")
        if answers(host, port):
            if process.stderr is not None:
                threading.Thread(target=process.stderr.read, daemon=True).start()  # never let its pipe fill
            return Beside(process, url_of(host, port))
        time.sleep(0.1)
    Beside(process, "").stop()
    raise RuntimeError(f"the dashboard did not answer on port {port} within {wait_s:.0f} s")
