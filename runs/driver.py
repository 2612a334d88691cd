"""Which process drives a run: claimed when a search starts or resumes, kept alive by a heartbeat, and checked
so that `l2l search --resume` never runs a second driver beside a live one (which would requeue its
children under it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from l2l.runs.store import Store, StoreError
from l2l.runs.store_records import RunRecord
from l2l.search_spaces import SearchSpace, decisions_change

HEARTBEAT_S = 15.0  # how often a driver says it is alive
STALE_S = 4 * HEARTBEAT_S  # a driver on another machine silent this long is taken for dead


def this_driver() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def live_driver(run: RunRecord, now: datetime | None = None) -> str | None:
    """Why ``run`` still has a live driver (a process on this machine that exists, or one elsewhere that sent a
    heartbeat lately), or None when it has none and may be resumed."""
    if run.status != "running" or not run.driver:
        return None
    host, _, pid_text = run.driver.rpartition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # it exists, under another user
        return f"its driver, process {pid} on this machine, is alive (stop it first: Ctrl-C there, or kill {pid})"
    if run.heartbeat_at is None:
        return None
    beat = run.heartbeat_at if run.heartbeat_at.tzinfo else run.heartbeat_at.replace(tzinfo=UTC)
    age = ((now or datetime.now(UTC)) - beat).total_seconds()
    if age < STALE_S:
        return f"its driver {run.driver} said it was alive {age:.0f} s ago (stop it first, or wait {STALE_S:.0f} s)"
    return None


def in_flight(run: RunRecord, handed: int, state: str) -> str:
    """Children handed to the executor, split into running and waiting where the run's settings say how many
    run at once: the store marks a child running when the driver hands it over, and an executor keeps more
    than it runs (the local one runs a batch one child at a time, Ray queues children behind busy workers).
    Where no driver runs the search (``state`` is not running), nothing does: they are unfinished."""
    if state != "running":
        return f"{handed} unfinished (--resume trains them again)" if handed else "0 running"
    if run.config.get("executor") == "local":
        slots: int | None = 1
    else:
        slots = (run.config.get("executor_options") or {}).get("max_concurrent")
    if not isinstance(slots, int):
        return f"{handed} at workers (running or waiting)"
    where = "in the search's process" if run.config.get("executor") == "local" else "at a worker"
    return f"{min(handed, slots)} running, {max(handed - slots, 0)} waiting {where}"


def run_state(run: RunRecord, now: datetime | None = None, storage: str = "") -> str:
    """What `l2l runs list/show` say of a run: its status, except that a ``running`` run whose driver is gone
    (killed, its machine lost) is ``stale``, with how long it has been silent and how to continue it (``storage``:
    the `` --storage URL`` that command needs, when the store is not the default)."""
    resume = f"resume with: l2l search --resume {run.id}{storage}"
    if run.status == "running" and not run.driver:  # recorded before drivers were (migration 0003), or by a script
        since = run.updated_at if run.updated_at.tzinfo else run.updated_at.replace(tzinfo=UTC)
        silent = max(0.0, ((now or datetime.now(UTC)) - since).total_seconds())
        return run.status if silent < STALE_S else f"stale (no driver recorded, silent for {silent:.0f} s; {resume})"
    if run.status != "running" or run.driver == this_driver() or live_driver(run, now):
        return run.status
    if run.heartbeat_at is None:
        return f"stale (no heartbeat; {resume})"
    beat = run.heartbeat_at if run.heartbeat_at.tzinfo else run.heartbeat_at.replace(tzinfo=UTC)
    age = max(0.0, ((now or datetime.now(UTC)) - beat).total_seconds())
    return f"stale (no heartbeat for {age:.0f} s; {resume})"


def ended_for_good(run: RunRecord, counts: dict[str, int]) -> bool:
    """Whether a failed run ended with every child recorded and none succeeding (not a crash): nothing to
    resume. ``counts``: its children by status."""
    ended = run.status == "failed" and (run.error or "").startswith("no child succeeded")
    return ended and counts.get("done", 0) + counts.get("failed", 0) >= run.n_children


def resumable(store: Store, run_id: int, error: type[Exception]) -> RunRecord:
    """Run ``run_id`` if it can be resumed, else ``error`` saying why not: it is done, it ended with every child
    recorded and none succeeding, or a live process drives it."""
    run = store.get_run(run_id)
    if run.status == "done":
        sharing = run.config.get("weight_sharing")  # its children are what its epochs scored, not its size
        held = f"{sharing['epochs']} epochs" if isinstance(sharing, dict) and "epochs" in sharing else None
        raise error(f"run {run_id} is already done ({held or f'{run.n_children} children'}); nothing to resume")
    counts = store.count_children(run_id)
    if ended_for_good(run, counts):
        raise error(
            f"run {run_id} ended with every child recorded ({counts['failed']} failed, {counts['done']} done); "
            "nothing to resume"
        )
    alive = live_driver(run)
    if alive is not None:
        raise error(f"run {run_id} is still running: {alive}")
    return run


def same_space(store: Store, run: RunRecord, space: SearchSpace, error: type[Exception]) -> None:
    """``error`` naming the change when ``space`` (rebuilt to resume ``run``) declares other decisions than it
    did when the run started: the run's stored tokens and its controller's state index those."""
    recorded = store.run_decisions(run.id)
    change = None if recorded is None else decisions_change(recorded, space.decisions())
    if change is not None:
        raise error(
            f"run {run.id}: the space {run.space!r} changed since the run started ({change}), so its recorded "
            "tokens would name other architectures; restore the space to resume it, or start a new run"
        )


def take_over(store: Store, run: RunRecord, error: type[Exception]) -> None:
    """Claim ``run`` for this process and mark it running, as `resumable` read it: two resumes of one run
    started at once both passed that check, and both drove the run."""
    if not store.take_over_run(run.id, this_driver(), (run.driver, run.status)):
        raise error(f"run {run.id} was resumed by another process ({store.get_run(run.id).driver}) meanwhile")


class Heartbeat:
    """While open, a daemon thread records every `HEARTBEAT_S` seconds that this process drives ``run_id``."""

    def __init__(self, store: Store, run_id: int, every: float = HEARTBEAT_S) -> None:
        self.store, self.run_id, self.every = store, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"l2l-heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.store.heartbeat(self.run_id)
            except StoreError:
                pass  # a store that is gone for a moment: the search itself reports it

    def __enter__(self) -> Heartbeat:
        self.store.claim_run(self.run_id, this_driver())
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be (the CLI does): the search stops the same way and records which."""


_sigterm_came = threading.Event()  # Ray, waiting for children, re-raises any KeyboardInterrupt as a plain one


def stop_on_sigterm() -> None:
    """Make SIGTERM stop this process as Ctrl-C does, raising `Terminated` (the CLI's handler, set before Ray
    starts, which keeps it). The signal is also remembered, for `as_stop`: a `Terminated` raised while `ray.get`
    or `ray.wait` waits reaches the caller as a plain KeyboardInterrupt (Ray checks signals in C++ and raises its
    own), and a scheduler's stop was then recorded as the user's Ctrl-C, exit 130 instead of 143."""

    def handler(signum: int, frame: object) -> None:
        _sigterm_came.set()
        raise Terminated

    _sigterm_came.clear()
    signal.signal(signal.SIGTERM, handler)


def as_stop(exc: KeyboardInterrupt) -> KeyboardInterrupt:
    """The stop ``exc`` stands for: a `Terminated` where `stop_on_sigterm`'s handler ran since the last stop was
    read (whatever Ray made of it), else ``exc``. Read once, where the stop is caught: what is recorded and the
    exit code then agree, and a later Ctrl-C in the same process is a Ctrl-C."""
    if _sigterm_came.is_set():
        _sigterm_came.clear()
        return exc if isinstance(exc, Terminated) else Terminated()
    return exc


def stop_signal(exc: BaseException) -> int:
    """The signal a user's stop came as: SIGTERM for `Terminated` (see `as_stop`), else SIGINT (Ctrl-C)."""
    return int(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def stop_reason(exc: BaseException) -> str:
    """How a user's stop is recorded: Ctrl-C, or SIGTERM (a scheduler's or `kill`'s)."""
    return "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted by the user"


def record_stop(store: Store, run_id: int, exc: BaseException) -> None:
    """Record that run ``run_id`` stopped on ``exc``: its unfinished children queued again for a resume, and its
    status interrupted (Ctrl-C) or failed, with the reason."""
    if isinstance(exc, KeyboardInterrupt):
        store.requeue_unfinished(run_id, f"{stop_reason(exc)}; run again on resume")
        store.set_run_status(run_id, "interrupted", stop_reason(exc))
    else:
        store.requeue_unfinished(run_id, f"the search stopped: {exc}")
        store.set_run_status(run_id, "failed", f"{type(exc).__name__}: {exc}")


class IgnoredInterrupts:
    """Ctrl-C and SIGTERM (which the CLI turns into Ctrl-C) ignored while a driver writes where its run stands:
    a second one during the cleanup of the first must not cut the store's writes short (the run would look
    alive, "stale", with children still at workers). Only in the main thread, where Python delivers signals."""

    def __enter__(self) -> IgnoredInterrupts:
        main = threading.current_thread() is threading.main_thread()
        kinds = (signal.SIGINT, signal.SIGTERM) if main else ()
        self.old = [(kind, signal.signal(kind, signal.SIG_IGN)) for kind in kinds]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for signum, handler in self.old:
            signal.signal(signum, handler)


def code_version() -> str:
    """The installed l2l version, plus the git commit when running from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("l2l")
    except PackageNotFoundError:
        text = "unknown"
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                text += f"+g{out.stdout.strip()}"
        except (OSError, subprocess.SubprocessError):
            pass
    return text
