"""What every command group shares: the consoles, the store and run options, and one-line user errors."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from l2l.runs.config import STORAGE_ENV, UsageError

if TYPE_CHECKING:
    from l2l.runs.store import Store
    from l2l.search_spaces import SearchSpace

console = Console()
err_console = Console(stderr=True)
PIPE_WIDTH = 200  # `l2l` writing to a pipe or a file: Rich's 80 columns would cut figures in tables to "15,2…"


def widen_for_pipes() -> None:
    """Give the consoles `PIPE_WIDTH` columns where they write to no terminal and $COLUMNS does not say."""
    for out, stream in ((console, sys.stdout), (err_console, sys.stderr)):
        if stream is not None and not stream.isatty() and "COLUMNS" not in os.environ:
            out.width = PIPE_WIDTH


StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage", help=f"SQLAlchemy URL of the results store \\[env {STORAGE_ENV}; default sqlite:///l2l.db]."
    ),
]
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id, or the name of one run (see `l2l runs list`).")]
SpaceOptionOpt = Annotated[
    list[str] | None, typer.Option("--space-option", "-S", metavar="KEY=VALUE", help="Space option KEY=VALUE.")
]


def first_line(error: str | None) -> str:
    """The one-line reason of a child's error (its traceback, when it has one, follows on later lines)."""
    return (error or "unknown").strip().splitlines()[0] if (error or "").strip() else "unknown"


def storage_flag(store: Store) -> str:
    """`` --storage URL`` to repeat in a command the user is told to run (`storage_flag_of`)."""
    from l2l.runs.store_engine import storage_flag_of

    return storage_flag_of(store.url)


def run_log_file(log_dir: Path, store: Store, run_id: int) -> Path:
    """The file for Ray's messages of run ``run_id`` of ``store``, this process: under a folder per store (its
    database's name and a hash of its URL, a SQLite file's path made absolute), since every store has a run 1."""
    import hashlib
    import time

    from sqlalchemy.engine import make_url

    url = make_url(store.url)
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        url = url.set(database=str(Path(str(url.database)).resolve()))
    key = hashlib.sha256(url.render_as_string(hide_password=False).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9._]+", "-", Path(str(url.database or "")).name or url.drivername).strip("-.")
    stamp = f"ray-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return log_dir / f"{name or 'store'}-{key}" / f"run-{run_id}" / stamp


def most_common_failure(errors: Iterable[str | None]) -> tuple[str, int, int]:
    """The most common one-line reason among children's errors, how many share it, and the position (in
    ``errors``) of the first that has it. Reasons that differ only in their numbers (bytes asked for, a step, a
    shape) or in what they quote (each optimizer rule's own formula) are one reason: the first is shown."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for at, error in enumerate(errors):
        line = first_line(error)
        quoted = re.sub(r"(?<![A-Za-z])'[^']*'", "'…'", line)  # not the apostrophe of "can't"
        groups.setdefault(re.sub(r"\d+(?:\.\d+)?", "#", quoted), []).append((at, line))
    found = max(groups.values(), key=len)
    lines = {line for _, line in found}
    varied = " (the first; the others differ only in their numbers or what they quote)" if len(lines) > 1 else ""
    return found[0][1] + varied, len(found), found[0][0]


def error_line(message: str, code: int = 1) -> int:
    """Print one clear ``error:`` line on stderr; returns ``code`` for the caller to exit with."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return code


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line and exit non-zero (no traceback for user mistakes)."""
    raise typer.Exit(error_line(message, code))


# the project's domain errors, by the module that defines each: a command that never loads a module (torch's,
# for the datasets) cannot meet its error, so `user_errors` looks only among the modules loaded
DOMAIN_ERRORS = {
    "l2l.search_spaces.api": "SpaceError",
    "l2l.controllers.names": "ControllerError",
    "l2l.runs.store_records": "StoreError",
    "l2l.runs.search_config": "SearchError",
    "l2l.runs.executors": "ExecutorError",
    "l2l.nas.data": "DatasetError",
    "l2l.optsearch.language": "RuleError",
}


def domain_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the project's domain errors (or a user mistake the CLI found)."""
    loaded = [getattr(sys.modules.get(m), name, None) for m, name in DOMAIN_ERRORS.items()]
    return isinstance(exc, (UsageError, *(cls for cls in loaded if isinstance(cls, type))))


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the project's domain errors into one-line messages."""
    try:
        yield
    except Exception as exc:
        if domain_error(exc):
            error_line(str(exc))
            for note in getattr(exc, "__notes__", ()):  # what to do next, e.g. how to resume the run
                err_console.print(escape(note), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        if isinstance(exc, OSError) and exc.filename is not None:  # a path given for output (or input) that
            why = (exc.strerror or type(exc).__name__).lower()  # cannot be used
            logs = os.environ.get("L2L_LOG_DIR")
            # Ray's logs, made when it first says something, in a folder that cannot be one
            if logs and not Path(logs).is_dir() and Path(str(exc.filename)).is_relative_to(logs):
                why = "not a directory" if why == "file exists" else why
                fail(f"L2L_LOG_DIR={logs!r} cannot hold Ray's logs: {why}")
            fail(f"cannot use {str(exc.filename)!r}: {why}")
        raise


def check_writable(path: Path) -> None:
    """Refuse, before any work, an output file that could not be written once the work is done."""
    import os
    import tempfile

    if path.is_dir():
        raise UsageError(f"cannot use {str(path)!r}: is a directory")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise UsageError(f"cannot use {str(path)!r}: {str(folder)!r} is not a directory")
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise UsageError(f"cannot use {str(path)!r}: permission denied")
    if path.exists():
        return
    try:  # what os.access cannot tell (as root, or in /proc): create a file there, and remove it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"cannot use {str(path)!r}: {str(folder)!r} takes no new files ({exc.strerror})") from None


def open_store(storage: str | None, create: bool = False, migrate: bool = True) -> Store:
    """The store named by --storage, $L2L_STORAGE, or the SQLite file l2l.db here. Only a search (``create``)
    makes a SQLite file that is not there: reading a misspelt path must not leave an empty store behind.
    Without ``migrate`` its schema is left as it is (`l2l db status`)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from l2l.runs.store import DEFAULT_STORAGE, Store

    if storage is not None and not storage.strip():  # `--storage "$URL"` of an unset variable: not ./l2l.db
        raise UsageError(f"--storage is empty: give a store's URL, or leave it out for ${STORAGE_ENV} or l2l.db here")
    url = storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        parsed = None  # the store says what is wrong with the URL
    sqlite = parsed is not None and parsed.get_backend_name() == "sqlite" and "uri" not in parsed.query
    file = parsed.database if sqlite and parsed is not None else None
    if sqlite and file in (None, "", ":memory:"):  # each command is a process of its own: it would keep nothing
        raise UsageError(
            f"the store {url} is an in-memory SQLite database: nothing recorded would outlive this command; "
            "name a file (sqlite:///l2l.db) or a server"
        )
    if not create:
        path = Path(file).expanduser() if file and file != ":memory:" else None
        if path is not None and path.parent.is_dir() and not path.exists():  # no folder: the store says so
            raise UsageError(f"no store at {url}: the file {file!r} does not exist (a search creates it)")
    store = Store(url, create=create, migrate=migrate)
    if store.upgraded_from is not None:  # one way: an older l2l cannot open it any more
        from l2l.runs.store_engine import schema_head

        err_console.print(
            f"note: upgraded store {store.label} from schema revision {store.upgraded_from} to {schema_head()}; an "
            "l2l older than this one can no longer open it",
            highlight=False,
            soft_wrap=True,
        )
    return store


def is_run_id(text: str) -> bool:
    """Whether a RUN argument ``text`` is a run id (ASCII digits), not a run's name."""
    return re.fullmatch(r"[0-9]+", text.strip()) is not None


def run_id_of(store: Store, ref: str) -> int:
    """The id of the run ``ref`` names: a run id, or the ``--name`` of exactly one run (a number is an id)."""
    ref = ref.strip()
    if is_run_id(ref):
        return int(ref)
    ids = store.run_ids_named(ref)
    if len(ids) == 1:
        return ids[0]
    if ids:
        raise UsageError(f"{len(ids)} runs are named {ref!r} (runs {', '.join(map(str, ids))}); name one by its id")
    raise UsageError(f"no run {ref!r} in store {store.label}: RUN is a run id or a run's name (see `l2l runs list`)")


def space_of(run: Any, store: Store | None = None) -> SearchSpace:
    """The space a stored run searched, rebuilt from its name and options (to describe or retrain its children),
    and, with the ``store``, what it measured when the run started (`SearchSpace.pinned_data`)."""
    from l2l.search_spaces import SpaceError, load_space

    try:
        space = load_space(run.space, dict(run.config.get("space_options") or {}), validate=False)
        if store is not None:
            space.use_pinned_data(store.space_data(run.id))
    except SpaceError as exc:
        raise UsageError(f"cannot rebuild the space {run.space!r} of run {run.id}: {exc}") from None
    return space


def say_ray_log(exc: BaseException) -> None:
    """Where Ray's own messages went, when a search fails on ``exc`` and Ray said something; not for l2l's own
    refusals (a run another process resumed, a store gone, a plugin's mistake), where Ray's log says nothing."""
    from l2l.runs.ray_cluster import ray_log
    from l2l.runs.search_config import SearchError
    from l2l.runs.store import StoreError
    from l2l.search_spaces import SpaceError

    if isinstance(exc, (SearchError, StoreError, SpaceError, UsageError)):
        return
    path = ray_log()
    if path is not None:
        err_console.print(f"Ray's own messages are in {path}", highlight=False, soft_wrap=True)


def discard_unstarted(store: Store, run_id: int) -> bool:
    """Delete a new run that failed before any child finished (a dataset its workers cannot load, a cluster
    that went away), or before a weight-sharing run's first epoch did: it holds nothing to resume or read,
    and would linger in `runs list` as "failed 0/N".
    Returns whether it was deleted (not where the store itself cannot be read)."""
    from l2l.runs.store import StoreError

    try:
        counts = store.count_children(run_id)
        if counts["done"] or counts["failed"] or store.updates(run_id) or store.epochs(run_id):
            return False
    except StoreError:
        return False
    store.delete_run(run_id)
    return True


def shown_name(name: str | None) -> str:
    """A run's name for a terminal: control characters of names stored before `name_problem` shown escaped."""
    from l2l.runs.search_config import controls

    return "".join(repr(c)[1:-1] if controls(c) else c for c in name or "")
