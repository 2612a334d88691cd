"""The Ray instance children run on: an embedded one started for the run, or a cluster joined with ``--address``.

Joining says which cluster it joined, finds out when the cluster asks for Ray's token authentication,
and refuses, with one line each, a head that does not answer, a token it lacks, and the instance that
``ray.init()`` started inside some other process (which ``--address auto`` would otherwise join
silently, and which stops when that process does). An embedded instance runs in a temporary
directory of its own, removed when the run ends, so it neither leaves files behind nor becomes what
another process's ``--address auto`` finds. No process Ray starts for l2l inherits the store's URL or
another secret from the driver's environment (`without_secrets`); the workers drop any they got from
the node they run on (`strip_secrets`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l2l.runs.config import EMBEDDED
from l2l.runs.executors import ExecutorError
from l2l.runs.ray_address import head_alive as head_alive  # the executor's check of a joined head
from l2l.runs.ray_address import reach
from l2l.runs.ray_signals import driver_keeps_sigterm
from l2l.runs.secrets import without_secrets

TOKEN_HELP = (
    "copy the head's token (`ray get-auth-token` there) to ~/.ray/auth_token here, or set RAY_AUTH_TOKEN "
    "(l2l turns token authentication on where it finds one)"
)


def refused_token(where: str) -> ExecutorError:
    return ExecutorError(f"{where} refused this machine's Ray token ({token_source()}): {TOKEN_HELP}")


def token_source() -> str:
    """Where this machine's Ray token comes from, as Ray looks for it: what a refusal names."""
    for variable in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        if os.environ.get(variable):
            return f"from ${variable}"
    return "from ~/.ray/auth_token"


def _probe(address: str) -> Any:
    """A GCS client of the head at ``address``; raises Ray's error when it refuses this process (one try,
    where `ray.init` would retry for 20 s and print a warning per try)."""
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    with _stderr_to_log():
        return GcsClient(address=address, cluster_id=None)


def _token_auth_error(exc: BaseException) -> bool:
    return "InvalidAuthToken" in str(exc) or type(exc).__name__ == "AuthenticationError"


def _enable_token_auth() -> bool:
    """Use the token found on this machine (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token), as Ray does
    for a cluster it finds on its own; False when there is none or RAY_AUTH_MODE was set by the user."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return False
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return False
    try:
        return bool(maybe_enable_token_auth_if_token_available(warn_if_disabled=False))
    except Exception as exc:  # a token file named but missing or empty (Ray's AuthenticationError)
        if not _token_auth_error(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". Note:")[0]
        raise ExecutorError(f"Ray token authentication: {first}; {TOKEN_HELP}") from None


def check_join(address: str) -> tuple[str, bool]:
    """The head's address to pass to `ray.init` for ``address`` (host:port or auto), and whether token
    authentication is on; refuses, in one line, what `ray.init` would fail on slowly or join silently."""
    auto = address == "auto"
    if auto:
        from ray._private.services import get_ray_address_from_environment

        try:
            address = get_ray_address_from_environment("auto", None)
        except ConnectionError as exc:
            raise ExecutorError(f"--address auto found no Ray cluster on this machine ({exc}); start one with "
                                "`ray start --head`, or pass --address HOST:PORT") from None  # fmt: skip
        if address in (None, "auto"):
            raise ExecutorError(
                "--address auto found no Ray cluster on this machine; start one with `ray start --head`"
            )
    elif address.startswith("ray://"):
        reach(address)
        return address, os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    reach(address)
    where = f"the Ray cluster --address auto found at {address}" if auto else f"the Ray cluster at {address!r}"
    try:
        client = _probe(address)
    except Exception as exc:  # Ray's errors have no common base here: authentication, RPC, connection
        if not _token_auth_error(exc):
            raise ExecutorError(f"cannot join {where}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            raise refused_token(where) from None
        mode = os.environ.get("RAY_AUTH_MODE")
        if mode is not None:  # set, and not to token: l2l leaves the user's choice alone
            raise ExecutorError(
                f"{where} uses token authentication, and RAY_AUTH_MODE={mode} here turns it off: unset it or set "
                "RAY_AUTH_MODE=token, with the head's token (`ray get-auth-token` there) in ~/.ray/auth_token"
            ) from None
        if not _enable_token_auth():
            raise ExecutorError(f"{where} uses token authentication; this machine has no token: {TOKEN_HELP}") from None
        try:
            client = _probe(address)
        except Exception as again:  # as above
            if _token_auth_error(again):
                raise refused_token(where) from None
            raise ExecutorError(f"cannot join {where}: {type(again).__name__}: {again}") from None
    if auto and _started_by_ray_init(client):
        raise ExecutorError(
            f"--address auto found {address}, a Ray instance that ray.init() started inside another process (it "
            "stops when that process does); start a cluster with `ray start --head` and pass --address HOST:PORT"
        )
    return address, os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def _started_by_ray_init(client: Any) -> bool:
    """Whether the cluster of ``client`` is one that `ray.init()` started in a process (not `ray start`)."""
    try:
        from ray._common.usage.usage_lib import get_cluster_metadata

        return bool(get_cluster_metadata(client).get("ray_init_cluster"))
    except Exception:  # unknown (an older Ray, no metadata): then it is not refused
        return False


@dataclass
class RayInstance:
    """The Ray instance this process is connected to, what it is (for the user) and what l2l must clean up."""

    address: str | None  # the head's host:port; None for an embedded instance
    owned: bool  # an embedded instance, started here and stopped with the run
    token: bool  # Ray's token authentication is on
    temp_dir: str | None = None  # the embedded instance's directory, removed at shutdown

    def describe(self) -> str:
        """One line: which cluster, its nodes and resources, and whether token authentication is on."""
        import ray

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        res = ray.cluster_resources()
        gpus = f", {res['GPU']:g} GPU" if res.get("GPU") else ""
        head = ray.get_runtime_context().gcs_address
        where = "an embedded Ray instance" if self.owned else f"the Ray cluster at {head}"
        auth = "token authentication on" if self.token else "token authentication off"
        return f"children run on {where}: {len(nodes)} node(s), {res.get('CPU', 0):g} CPU{gpus}; {auth}"

    def shutdown(self) -> None:
        """Disconnect; stop an embedded instance and remove what it wrote."""
        import ray

        if self.owned:
            ray.shutdown()
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.owned = False


_log_file: Path | None = None  # where `route_ray_logs` sends Ray's messages in this process


def route_ray_logs(log_file: Path) -> None:
    """Ray's own messages in this process (its token banner, worker death notices, its join retries) go to
    ``log_file``, not the terminal where they would break into the progress bar; for the CLI, which owns
    the process's output."""
    global _log_file
    old_file, _log_file = _log_file, log_file
    if old_file is not None and old_file != log_file and old_file.exists():  # moved under its run: keep what it has
        with _open_log() as out:
            out.write(old_file.read_text(errors="replace"))
        old_file.unlink()
    handler = _LogFile(log_file, mode="a", delay=True)  # no file, nor folder, until Ray says something
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("ray")
    for old in [h for h in logger.handlers if getattr(h, "l2l", False)]:
        logger.removeHandler(old)
        old.close()
    handler.l2l = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.propagate = False


class _LogFile(logging.FileHandler):
    """A log file whose folder is made when the first message comes."""

    def _open(self) -> Any:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _open_log() -> Any:
    assert _log_file is not None  # callers check
    _log_file.parent.mkdir(parents=True, exist_ok=True)
    return open(_log_file, "a")


def ray_log() -> Path | None:
    """The file Ray's messages go to in this process, if `route_ray_logs` chose one and Ray wrote to it."""
    return _log_file if _log_file is not None and _log_file.exists() and _log_file.stat().st_size else None


def _route_published() -> None:
    """What the raylets publish to this driver (a worker died, ...) goes to the log file too, when there is one."""
    if _log_file is None:
        return
    logger = logging.getLogger("ray")
    for handler in [h for h in logger.handlers if not getattr(h, "l2l", False)]:
        logger.removeHandler(handler)  # the terminal handler Ray adds when imported
    with suppress(ImportError, AttributeError):
        import ray._private.worker as ray_worker

        ray_worker.print_to_stdstream = _print_to_log  # its printing thread calls it by this name


def _print_to_log(data: Mapping[str, Any], ignore_prefix: bool = False) -> None:
    """Ray's printer of messages published by its processes, writing them to the log file instead."""
    if _log_file is None:
        return
    with suppress(OSError), _open_log() as out:
        for line in data.get("lines", []):
            out.write(f"({data.get('pid', 'ray')}) {line}\n")


@contextmanager
def _stderr_to_log() -> Iterator[None]:
    """What Ray's C++ core prints on stderr while this runs (a warning per refused try) goes to the log file."""
    if _log_file is None:
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with _open_log() as out:
            os.dup2(out.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def connect(address: str | None, num_cpus: int | None) -> RayInstance:
    """Join the cluster at ``address`` or start an embedded instance (``address`` None) with ``num_cpus``."""
    import ray

    _route_published()
    if address not in EMBEDDED:
        head, token = check_join(address)
        try:
            with _stderr_to_log(), driver_keeps_sigterm():
                ray.init(address=head, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ExecutorError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
        return RayInstance(head, owned=False, token=token)
    sweep_embedded()
    temp_dir = tempfile.mkdtemp(prefix=EMBEDDED_PREFIX)
    try:
        with without_secrets(), _stderr_to_log(), driver_keeps_sigterm():  # Ray's processes inherit this environment
            ray.init(
                address=None if address is None else "local",  # Ray's word for a new instance; "embedded" is ours
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                _temp_dir=temp_dir,
            )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        _discard(temp_dir)
        raise ExecutorError(f"cannot start an embedded Ray instance: {exc}") from exc
    except BaseException:  # Ctrl-C while Ray starts: stop what it started so far
        _discard(temp_dir)
        raise
    private_token()
    token = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    return RayInstance(None, owned=True, token=token, temp_dir=temp_dir)


def private_token(path: Path | None = None) -> bool:
    """Make the Ray token file private to its owner (mode 600): Ray writes ~/.ray/auth_token readable by every
    user of the machine, and whoever reads it may join the cluster its first `ray start --head` makes. Returns
    whether it changed the mode (a file of another user, or none, is left alone)."""
    try:  # (no home directory at all, as for an arbitrary uid in a container: nothing to make private)
        where = path or Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
        st = where.stat()
        if st.st_uid != os.getuid() or not st.st_mode & 0o077:
            return False
        where.chmod(0o600)
    except (OSError, RuntimeError):
        return False
    return True


EMBEDDED_PREFIX = "l2l-ray-"


def sweep_embedded(root: str | None = None) -> list[Path]:
    """Remove the directories of embedded instances whose driver died without removing its own (``kill -9``),
    and stop the Ray processes they left running: a Ray session directory ends with its driver's pid.
    Returns the directories removed."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{EMBEDDED_PREFIX}*"):
        pids = [s.name.rpartition("_")[2] for s in folder.glob("session_2*")]
        if pids and all(p.isdigit() and not _alive(int(p)) for p in pids):
            stop_processes_using(folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _discard(temp_dir: str) -> None:
    """Stop what an embedded instance started (as far as it got) and remove its directory."""
    import ray

    with suppress(Exception):
        ray.shutdown()
    stop_processes_using(Path(temp_dir))
    shutil.rmtree(temp_dir, ignore_errors=True)


RAY_BINARIES = ("raylet", "gcs_server")  # Ray's own executables, by process name


def stop_processes_using(folder: Path) -> list[int]:
    """Kill this user's Ray processes holding a file under ``folder`` open (Ray's agents outlive a killed driver
    and ignore SIGTERM); others (a ``tail -f`` of an old log) are left alone. Linux's /proc only. Returns the
    pids killed."""
    prefix, killed, package = str(folder.resolve()) + os.sep, [], _ray_package()
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        try:
            if pid == os.getpid() or proc.stat().st_uid != os.getuid() or not _is_rays(proc, package):
                continue
            fds = list((proc / "fd").iterdir())
        except OSError:  # gone meanwhile, or not readable
            continue
        if any(_points_under(fd, prefix) for fd in fds):
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _ray_package() -> list[str]:
    """The folders of Ray's installed package, as prefixes of the scripts it runs."""
    import importlib.util

    spec = importlib.util.find_spec("ray")
    return [str(Path(p).resolve()) + os.sep for p in (spec.submodule_search_locations or [])] if spec else []


def _is_rays(proc: Path, package: list[str]) -> bool:
    """Whether a process is one of Ray's: an agent or worker (named ``ray::...``), a Ray executable, or a Python
    process running a script of Ray's ``package`` (its monitors)."""
    name = (proc / "comm").read_text().strip()
    if name.startswith("ray::") or name in RAY_BINARIES:
        return True
    command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return any(p in command for p in package)


def _points_under(fd: Path, prefix: str) -> bool:
    try:
        return os.readlink(fd).startswith(prefix)
    except OSError:  # closed meanwhile
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
