"""A driver's signals while Ray starts in its process: its own SIGTERM handler kept, a stop held until Ray is up."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any


@contextmanager
def driver_keeps_sigterm() -> Iterator[None]:
    """Keep a driver's own SIGTERM handler (the CLI's) through `ray.init`, which sets ``sys.exit(15)`` and a C++
    handler that dumps a stack; hold Ctrl-C, and SIGTERM where the driver handles it, until Ray is up (a stop that
    cut its start short crashed the process on exit), a second one acting at once: a SIGTERM while Ray started
    gave exit 15, 134 or 139. Ray's switches, in this process only; a process without its own SIGTERM handler,
    or a Ray without them, keeps Ray's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    own = callable(signal.getsignal(signal.SIGTERM))  # a library caller without one keeps Ray's SIGTERM handling
    before = {sig: signal.getsignal(sig) for sig in ((signal.SIGTERM, signal.SIGINT) if own else (signal.SIGINT,))}
    held: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if held:  # asked twice (Ray's start hangs): stop now, as the handler in place would
            handler = before[signal.Signals(signum)]
            if callable(handler):
                handler(signum, frame)
            raise KeyboardInterrupt
        held.append(signum)

    for sig in before:
        signal.signal(sig, hold)
    patched = _keep_ray_off_sigterm() if own else []
    try:
        yield
    finally:
        for module, name, value in patched:
            setattr(module, name, value)
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(held):  # now that Ray is up (or failed to start): the stop, as it came
            signal.raise_signal(signum)


def _keep_ray_off_sigterm() -> list[tuple[Any, str, Any]]:
    """Ray's switches that keep `ray.init` from replacing this process's SIGTERM handler (its Python one and its
    C++ failure handler), turned; returns what to turn back."""
    patched: list[tuple[Any, str, Any]] = []
    with suppress(ImportError):
        import ray._private.ray_constants as ray_constants
        import ray._private.utils as ray_utils

        for module, name, value in (
            (ray_utils, "set_sigterm_handler", lambda handler: None),
            (ray_constants, "RAY_DISABLE_FAILURE_SIGNAL_HANDLER", True),
        ):
            if hasattr(module, name):
                patched.append((module, name, getattr(module, name)))
                setattr(module, name, value)
    return patched
