"""`l2l dashboard`: serve a read-only web view of the store, live while searches write it."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from typing import Annotated

import typer
from rich.markup import escape

from l2l.runs.cli.common import STORAGE_ENV, StorageOpt, console, err_console, user_errors

FINAL_S = 5.0  # a dashboard beside a search outlives it by two of its pages' polls (`dashboard.app.POLL_MS`, 2 s)

HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to listen on. The default answers this machine only; anything else is reachable by whoever "
        "can reach that address, with no login (a warning says so).",
    ),
]
PortOpt = Annotated[int, typer.Option("--port", help="TCP port to listen on.", min=1, max=65535)]
ExitWithOpt = Annotated[
    int | None, typer.Option("--exit-with", hidden=True, help="Stop when this process (a search) is gone.")
]


def dashboard(
    storage: StorageOpt = None,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8080,
    exit_with: ExitWithOpt = None,
) -> None:
    """Serve a web view of the store: every run live, a run's rewards, controller, children, Pareto front, best
    architecture or update rules, and each child's spec, curves and error. It only reads: a running search
    is never slowed or blocked, and stopped, crashed or finished runs are shown as they are."""
    from l2l.runs.dashboard import bind_warning, serve
    from l2l.runs.dashboard.server import BESIDE_ENV
    from l2l.runs.store import DEFAULT_STORAGE

    # a search's dashboard gets its store in BESIDE_ENV (never on a command line, where `ps` shows a password),
    # leaving the user's own STORAGE_ENV as it was: the hints it gives name --storage where the user needs it
    url = storage or os.environ.pop(BESIDE_ENV, None) or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    warning = bind_warning(host)
    if warning:
        err_console.print(f"[yellow]{warning}[/]", highlight=False, soft_wrap=True)
    with user_errors():
        serve(url, host, port, exit_with=exit_with)


def start_dashboard(stack: ExitStack, url: str, port: int) -> None:
    """`l2l dashboard` on the search's store in a process of its own, stopped when ``stack`` closes; says where, or
    why it did not start (the search runs all the same)."""
    from l2l.runs.dashboard import start_beside

    try:
        beside = start_beside(url, port=port)
    except RuntimeError as exc:
        err_console.print(f"[yellow]warning: {escape(str(exc))}; the search goes on without it[/]", highlight=False)
        return

    def stop(exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:  # the search ended: the open pages' next poll shows the run as done, not a lost server
            console.print(
                f"dashboard: the final state stays up {FINAL_S:.0f} s for the pages open on it", highlight=False
            )
            time.sleep(FINAL_S)
        beside.stop()

    stack.push(stop)
    console.print(
        f"dashboard at {beside.url} (while this search runs; `l2l dashboard` serves the store any time)",
        highlight=False,
        soft_wrap=True,
    )
