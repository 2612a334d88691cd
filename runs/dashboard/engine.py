"""The dashboard's connection to a store: an engine that cannot write, that follows a SQLite file deleted or
replaced under it, and a fast path for many plain rows."""

from __future__ import annotations

import gc
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from l2l.runs.store_engine import connect_sqlite, read_only_reason, safe_url
from l2l.runs.store_records import StoreError


def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def _postgres_read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    cur.close()
    dbapi_conn.commit()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite store URL, None for a server's database; `StoreError` for a URL that is neither."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StoreError(f"invalid storage URL {safe_url(url)!r}; expected e.g. sqlite:///l2l.db") from None
    if parsed.get_backend_name() != "sqlite":
        return None
    path = parsed.database or ""
    if path in ("", ":memory:") or not Path(path).expanduser().is_file():
        raise StoreError(f"no store at {safe_url(url)}: the file does not exist (run a search first)")
    return Path(path).expanduser()


def read_only_engine(url: str) -> Engine:
    """An engine on ``url`` that cannot write; a SQLite file that does not exist is an error, not a new store."""
    label = safe_url(url)
    path = sqlite_file(url)
    backend = "sqlite" if path is not None else make_url(url).get_backend_name()
    try:
        if path is not None:  # a file deleted before a connection opens is an error, never a new store; one
            # this user cannot write (a read-only mount, an archive) is opened read-only
            file = path
            engine = create_engine(
                url,
                creator=lambda: connect_sqlite(file, "ro" if read_only_reason(file) is not None else "rw"),
                # read-only, a connection may be immutable (no process had the store open): none is kept, so a
                # search that starts writing it later is seen
                **({"poolclass": NullPool} if read_only_reason(file) is not None else {}),
            )
        else:  # a dashboard outlives server restarts: a pooled connection the server cut is replaced as it is taken
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot open store {label}: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_read_only)
    elif backend == "postgresql":
        event.listen(engine, "connect", _postgres_read_only)
    return engine


class FollowedEngine:
    """A read-only engine that follows a SQLite file: pooled connections keep the file they opened, so a store
    deleted under a running dashboard would still be served, and a new one at the same path never read. Each
    read first compares the file's identity (device, inode: one ``stat``) with the one the pool opened."""

    def __init__(self, url: str) -> None:
        self.label = safe_url(url)
        self.path = sqlite_file(url)
        self._seen = self._identity()
        self._lock = threading.Lock()
        self.engine = read_only_engine(url)
        self.generation = 0  # how many times the file was replaced: what is cached from an older one is stale
        self.renewed: list[Callable[[], None]] = []  # called once the file was replaced (caches to drop)

    def _identity(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreError(f"no store at {self.label}: the file no longer exists (deleted or moved)") from None
        except OSError as exc:
            raise StoreError(f"cannot read store {self.label}: {exc.strerror or exc}") from None
        return st.st_dev, st.st_ino

    def connect(self) -> Connection:
        """A connection to the store as it is now: the file at the path, not one deleted or replaced since."""
        try:
            now = self._identity()
        except StoreError:
            with self._lock:  # let go of the deleted file (its disk space); whatever appears there next is new,
                self.engine.dispose()  # even on the same inode (held open by the pool until now, never reused)
                self._seen = None
            raise
        if now != self._seen:
            with self._lock:
                if now != self._seen:
                    self.engine.dispose()  # connections in use finish on the old file; new ones open the new
                    self._seen = now
                    self.generation += 1
                    for hook in self.renewed:
                        hook()
        return self.engine.connect()

    def dispose(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


_paused = 0  # how many bulk reads are under way with the garbage collector held off
_pause_lock = threading.Lock()
_was_enabled = False


@contextmanager
def bulk() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while many rows are made into objects: tens of thousands of new
    tuples trigger collections that scan every object of the process (half of reading 100,000 children). Rows of
    numbers and text form no cycles; the collector runs again once the last bulk read of any thread ends (it
    stays off if something else had turned it off)."""
    global _paused, _was_enabled
    with _pause_lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _pause_lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


def plain_rows(conn: Connection, statement: Any) -> list[tuple[Any, ...]]:
    """The rows of a statement over plain columns (numbers, text: nothing a result processor converts), fetched
    straight from the driver's cursor in the connection's transaction: about twice as fast as SQLAlchemy's rows on
    100,000 of them. SQLAlchemy still binds the parameters (a JSON path's bind processor included)."""
    result = conn.execute(statement)
    errors = conn.dialect.loaded_dbapi.Error
    try:
        with bulk():
            rows = result.cursor.fetchall()
    except errors as exc:  # the driver's own, where SQLAlchemy's rows would have wrapped it (a StoreError then)
        raise DBAPIError.instance(str(statement), None, exc, errors) from exc
    finally:
        result.close()
    return cast(list[tuple[Any, ...]], rows) if not rows or type(rows[0]) is tuple else [tuple(r) for r in rows]


def decoder(then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``then(json.loads(text))`` for the JSON text of many rows that repeat a few texts (a run's token sequences,
    its updates' extras): each distinct text decoded once and what it gave shared (not to be changed). A value
    already decoded (PostgreSQL's driver hands JSON over so) gets ``then`` alone."""
    seen: dict[str, Any] = {}

    def decode(text: Any) -> Any:
        if not isinstance(text, str):
            return then(text)
        found = seen.get(text, seen)
        if found is seen:
            found = seen[text] = then(json.loads(text))
        return found

    return decode


def spec_contains(spec_text: Any, text: str) -> Any:
    """A filter on a child's stored spec (JSON text) for ``text``: as written (``relu``, ``"act": ``), or as the
    pages show specs, ``width=4 act=relu`` (every ``name=value`` term, in any order), which the JSON spells
    ``["width", 4]`` or ``["act", "relu"]``."""
    from sqlalchemy import and_, or_

    terms = [t.partition("=") for t in text.split()]
    if not terms or not all(name and sep for name, sep, _ in terms):
        return spec_text.contains(text, autoescape=True)

    def spelt(name: str, value: str) -> list[str]:  # text, a number, or an anchor's bits (shown as digits, or none)
        forms = [f'["{name}", "{value}"]', f'["{name}", {value}]']
        return forms + ([f'["{name}", [{", ".join(value)}]]'] if set(value) <= {"0", "1"} else [])

    return and_(*(or_(*(spec_text.contains(f, autoescape=True) for f in spelt(n, v))) for n, _, v in terms))
