"""The dashboard's connection to a store: an engine that cannot write, and a fast path for many plain rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from l2l.runs.store_engine import safe_url
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


def read_only_engine(url: str) -> Engine:
    """An engine on ``url`` that cannot write; a SQLite file that does not exist is an error, not a new store."""
    label = safe_url(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise StoreError(f"invalid storage URL {label!r}; expected e.g. sqlite:///l2l.db") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or not Path(path).expanduser().is_file():
            raise StoreError(f"no store at {label}: the file does not exist (run a search first)")
    try:
        if backend == "sqlite":
            engine = create_engine(url, connect_args={"timeout": 10})
        else:  # a dashboard outlives server restarts: a pooled connection the server cut is replaced as it is taken
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot open store {label}: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_read_only)
    elif backend == "postgresql":
        event.listen(engine, "connect", _postgres_read_only)
    return engine


def plain_rows(conn: Connection, statement: Any) -> list[tuple[Any, ...]]:
    """The rows of a statement over plain columns (numbers, text: nothing a result processor converts), fetched
    through the driver's cursor in the connection's transaction: about twice as fast as SQLAlchemy's rows on
    100,000 of them. The statement is compiled with its bound parameters, as SQLAlchemy would send it."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[k] for k in compiled.positiontup or ()) if compiled.positional else compiled.params
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
