"""The database behind a results store: URL checks, the engine, Alembic migrations and transaction scopes.

Every database error leaves here wrapped in a `StoreError` that names the database (password hidden) and
the operation; `l2l.runs.store.Store` adds the records on top.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from l2l.runs.config import STORAGE_ENV
from l2l.runs.store_records import StoreError

DEFAULT_STORAGE = "sqlite:///l2l.db"


def storage_flag_of(url: str) -> str:
    """`` --storage URL`` to repeat in a command a user is told to run, unless the default or the environment
    already names this store (a password in the URL shown masked, as everywhere)."""
    return "" if url in (os.environ.get(STORAGE_ENV), DEFAULT_STORAGE) else f" --storage {safe_url(url)}"


MIGRATION_LOCK = 0x6C326C  # PostgreSQL advisory lock key of l2l's migrations ("l2l")


# user:password@ at the start of a URL, with or without its scheme ("postgres:secret@host" lacks one)
_PASSWORD = re.compile(r"^(?P<user>(?:[\w+.-]*://)?[^:/@\s]*):(?P<password>[^@/\s]*)@")


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages; also for a URL that does not parse."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(lambda m: f"{m['user']}:***@", url.strip())


def short_error(exc: BaseException) -> str:
    """The first line of a database error (the driver's own message when there is one), for one-line reports."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _url_problem(url: str) -> str:
    """What is wrong with a storage URL SQLAlchemy cannot parse, in words."""
    example = "expected e.g. sqlite:///l2l.db or postgresql+psycopg://user:password@host:5432/db"
    if url != url.strip():
        return f"it has spaces around it; {example}"
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(?!//)", url)
    backends = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql", "file")
    if scheme and (scheme[1].split("+")[0].lower() in backends):  # sqlite:l2l.db, not host:5432/db or user:pw@host
        return f"'//' is missing after {scheme[1] + ':'!r}; {example}"
    if "://" not in url:
        return f"it has no scheme; {example}"
    port = re.search(r"@[^/:]*:([^/?]*)", url) or re.search(r"://[^/@:]*:([^/?@]*)(?:[/?]|$)", url)
    if port and not port[1].isdigit():
        return f"its port {port[1]!r} is not a number; {example}"
    return example


MIGRATIONS = Path(__file__).parent / "migrations"


@functools.cache
def schema_revisions() -> frozenset[str]:
    """Every schema revision this l2l knows (its Alembic migrations)."""
    from alembic.script import ScriptDirectory

    return frozenset(script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions())


@functools.cache
def schema_head() -> str:
    """The newest schema revision this l2l knows: the one it upgrades every store it opens to."""
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory(str(MIGRATIONS)).get_current_head())


def read_only_reason(path: Path) -> str | None:
    """Why the SQLite store ``path`` (an existing file) cannot be written here, or None: its file is read-only,
    or its folder is and SQLite could not make the write-ahead log's files beside it (a read-only mount, an
    archive)."""
    if not os.access(path, os.W_OK):
        return f"its file {str(path)!r} is read-only"
    shm = path.with_name(path.name + "-shm")
    if not os.access(path.parent, os.W_OK) and not os.access(shm, os.W_OK):
        return f"its folder {str(path.parent)!r} is read-only"
    return None


def connect_sqlite(path: Path, mode: str) -> sqlite3.Connection:
    """A DB-API connection to the existing SQLite file ``path`` (never a new one) in ``mode`` ``rw`` or ``ro``.
    Read-only, a store in WAL mode needs its ``-shm`` file: where none is there and the folder cannot hold one,
    no process has the store open, so it is opened as immutable (read without locks), unless its write-ahead
    log holds writes, which such an open would not see: that is refused, saying so."""
    base = f"file:{quote(os.path.abspath(path))}?mode={mode}"
    beside = path.with_name(path.name + "-shm"), path.with_name(path.name + "-wal")
    if mode == "ro" and not beside[0].exists() and not os.access(path.parent, os.W_OK):
        try:
            logged = beside[1].stat().st_size  # a writer elsewhere may fold the log in and remove it meanwhile
        except FileNotFoundError:
            logged = 0
        if logged > 0:
            raise StoreError(
                f"cannot read store {path}: its write-ahead log {beside[1].name} holds writes that cannot be read "
                "in a folder this user cannot write; copy the store with that file to a folder you can write"
            )
        return sqlite3.connect(base + "&immutable=1", uri=True, timeout=10, check_same_thread=False)
    return sqlite3.connect(base, uri=True, timeout=10, check_same_thread=False)


class Database:
    """One SQLAlchemy database on a URL; creates or migrates the schema with Alembic unless ``migrate=False``."""

    def __init__(
        self,
        url: str = DEFAULT_STORAGE,
        *,
        migrate: bool = True,
        engine_kwargs: dict[str, Any] | None = None,
        create: bool = True,
    ) -> None:
        self.url = url
        self.label = safe_url(url)
        try:
            parsed = make_url(url)
            parsed.port  # noqa: B018 - a port that is not a number fails here, not deep in the driver
        except (ArgumentError, ValueError):
            raise StoreError(f"invalid storage URL {self.label!r}: {_url_problem(url)}") from None
        self._sqlite_file: Path | None = None
        self.read_only: str | None = None  # why this store cannot be written here (a read-only SQLite file)
        self.upgraded_from: str | None = None  # the schema revision `migrate` upgraded from, if it did
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            self._sqlite_file = Path(parsed.database).expanduser().resolve()
            parent = self._sqlite_file.parent
            if not parent.is_dir():
                raise StoreError(f"cannot open store {self.label}: directory {str(parent)!r} does not exist")
            if self._sqlite_file.is_dir():
                raise StoreError(f"cannot open store {self.label}: {str(self._sqlite_file)!r} is a folder")
            new = not self._sqlite_file.exists() and "uri" not in parsed.query  # (a URI names the file otherwise)
            if new and not os.access(parent, os.W_OK):  # SQLite said "unable to open database file"
                raise StoreError(f"cannot create store {self.label}: its folder {str(parent)!r} is read-only")
            if self._sqlite_file.is_file() and "uri" not in parsed.query:
                self.read_only = read_only_reason(self._sqlite_file)
        # a server's pooled connections can be cut under a long search (a restart, a failover, a pooler's reset,
        # pg_terminate_backend): each is checked as it is taken from the pool, and a dead one replaced, rather
        # than the search ending on its next write
        kwargs = {"pool_pre_ping": parsed.get_backend_name() != "sqlite", **(engine_kwargs or {})}
        if self.read_only is not None and self._sqlite_file is not None:  # reads work; a write says why not
            file = self._sqlite_file
            kwargs["creator"] = lambda: connect_sqlite(file, "ro")
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            hint = ""
            wrong = parsed.drivername != "postgresql+psycopg"  # a URL of another program's habit
            if parsed.drivername.split("+")[0] in ("postgres", "postgresql") and wrong:
                hint = "; write it postgresql+psycopg://user:password@host:5432/db (psycopg 3: the driver l2l installs)"
            raise StoreError(f"cannot open store {self.label}: {exc}{hint}") from exc
        if self.engine.dialect.name == "sqlite" and self.read_only is None:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if migrate:
            self.migrate(create)

    def migrate(self, create: bool = True) -> None:
        """Bring the schema to the newest Alembic revision (creating it in an empty database). Without ``create``
        (a command that only reads) a database holding another program's tables and no schema of l2l's is
        refused, not given l2l's tables."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._one_migration():  # the first connection too: it turns on WAL, which a creating process locks
            try:
                with self.engine.connect():
                    pass
            except SQLAlchemyError as exc:  # the server is not there, or refuses us: say so, not "cannot migrate"
                raise StoreError(f"cannot connect to store {self.label}: {short_error(exc)}") from exc
            current = self._revision()
            self._check_known(current)
            if self.read_only is not None:
                if current != schema_head():
                    raise StoreError(
                        f"cannot read store {self.label}: {self.read_only}, and its schema ({current or 'none'}) is "
                        f"not this l2l's ({schema_head()}); copy it to a folder you can write, where l2l upgrades it"
                    )
                return
            if not create:
                from sqlalchemy import inspect

                with self.engine.connect() as conn:
                    tables = sorted(inspect(conn).get_table_names())
                if tables and "alembic_version" not in tables:
                    shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
                    raise StoreError(
                        f"no l2l store at {self.label}: the database holds other tables ({shown}) and none of l2l's"
                    )
                if not tables:  # reading must not leave l2l's tables in a database it was pointed at by mistake
                    raise StoreError(f"no l2l store at {self.label}: the database is empty (a search creates one)")
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":  # two searches creating one new store raced on its
                        # types ("duplicate key ... pg_type"): one migrates, the other waits, then finds it done
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
            except SQLAlchemyError as exc:
                hint = ""
                if current is not None and "permission denied" in str(exc).lower():  # a role that may only read
                    hint = (
                        f"; its schema ({current}) is older than this l2l's ({schema_head()}): its owner upgrades it "
                        f"with `l2l db upgrade --storage {self.label}`"
                    )
                raise StoreError(f"cannot migrate store {self.label}: {short_error(exc)}{hint}") from exc
            if current is not None and current != schema_head():
                self.upgraded_from = current

    def schema_revision(self) -> str | None:
        """The schema revision the database is at (None: l2l never migrated it); `StoreError` if it cannot be read."""
        return self._revision()

    def _revision(self) -> str | None:
        """The schema revision the database is at; None for a database l2l never migrated."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.label}: reading its schema revision failed: {short_error(exc)}") from exc

    def _check_known(self, revision: str | None) -> None:
        """`StoreError` for a schema a newer l2l wrote (Alembic's own answer is a traceback), or another program's
        Alembic schema where l2l has none."""
        if revision is not None and revision not in schema_revisions():
            with self.engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
            if "runs" not in tables:
                raise StoreError(
                    f"no l2l store at {self.label}: the database holds another program's schema (Alembic revision "
                    f"{revision}) and none of l2l's tables"
                )
            raise StoreError(
                f"cannot open store {self.label}: a newer l2l wrote it (its schema is at revision {revision}, which "
                f"this l2l, at {schema_head()}, does not know); upgrade l2l to use it"
            )

    @contextmanager
    def _one_migration(self) -> Iterator[None]:
        """On a SQLite file, one process migrates at a time: SQLite's DDL is not transactional here, so two
        searches creating one new store raced on its tables ("table runs already exists"). An advisory lock
        (flock) on the file's folder, never on the file: closing any descriptor of the database file would
        drop the POSIX locks SQLite holds on it in this process. PostgreSQL: an advisory lock in the migration's
        transaction (`migrate`)."""
        path = self._sqlite_file
        try:
            import fcntl

            fd = None if path is None else os.open(path.parent, os.O_RDONLY)
        except (ImportError, OSError):  # no flock (Windows), or a folder SQLite will refuse with its own reason
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @contextmanager
    def session_scope(self, what: str = "access") -> Iterator[Session]:
        """A session that commits on success, rolls back on error, always closes, and wraps database errors."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StoreError(self._failed(what, exc)) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def connection_scope(self, what: str = "access") -> Iterator[Connection]:
        """A plain transaction without the ORM session: for the per-child writes of a busy driver."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(self._failed(what, exc)) from exc

    def _failed(self, what: str, exc: SQLAlchemyError) -> str:
        why = f"{short_error(exc)} ({self.read_only})" if self.read_only is not None else short_error(exc)
        return f"store {self.label}: {what} failed: {why}"

    def table_names(self) -> list[str]:
        """Tables present in the database (for checks and tests)."""
        try:
            return sorted(inspect(self.engine).get_table_names())
        except SQLAlchemyError as exc:
            raise StoreError(f"store {self.label}: listing tables failed: {short_error(exc)}") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
