"""The store's engine and transactions: SQLite pragmas, write locking, sessions and connections.

SQLite (the default) runs in WAL mode with a busy timeout; writes take the database's write lock at
the start of their transaction (``BEGIN IMMEDIATE``) and are serialised within the process, so
readers never block and writers never deadlock. PostgreSQL (``postgresql+psycopg://``, the
``postgres`` extra) is the other supported database: several service instances share one queue,
claiming jobs with ``SELECT … FOR UPDATE SKIP LOCKED``. The schema is created and upgraded by the
migrations of :mod:`prefect_qiskit_runtime.server.migrations` when a store opens its database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from prefect_qiskit_runtime.server.store.errors import DatabaseUnavailable

#: Seconds a SQLite statement waits for another writer's lock before it fails "database is locked".
DEFAULT_BUSY_TIMEOUT = 30.0
#: Seconds a new PostgreSQL connection may take (libpq waits forever by default).
CONNECT_TIMEOUT = 10
_EXAMPLE_URLS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"


def make_engine(url: str, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Engine:
    """Create the engine for ``url``; SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE``.

    Args:
        url: SQLAlchemy URL.
        busy_timeout: SQLite only: seconds to wait for a lock held by another connection.

    Returns:
        The engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT
        return create_engine(
            url, pool_pre_ping=True, pool_size=8, max_overflow=16, connect_args=connect_args
        )
    memory = url in {"sqlite://", "sqlite:///:memory:"}
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": busy_timeout},
    }
    if memory:
        kwargs["poolclass"] = StaticPool
    else:
        kwargs.update(pool_size=8, max_overflow=32)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, open transactions (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        if not memory:
            _enable_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write transaction takes the write lock up front, so it never has to upgrade a read
        # snapshot (which fails at once with SQLITE_BUSY, whatever the busy timeout). Sent on
        # the driver's connection: SQLAlchemy's statement machinery would double its cost.
        immediate = conn.get_execution_options().get("sqlite_immediate")
        statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        try:
            conn.connection.dbapi_connection.execute(statement)
        except sqlite3.OperationalError as exc:
            # Raised inside an event hook, the driver's error would escape SQLAlchemy's wrapping;
            # callers (and the retries of a job's end) expect SQLAlchemy's OperationalError.
            raise OperationalError(statement, None, exc) from exc

    return engine


def _enable_wal(cursor: sqlite3.Cursor, busy_timeout: float) -> None:
    """Switch the database file to WAL (kept by the file once set), waiting out other connections.

    The switch needs the file to itself, and SQLite refuses it with SQLITE_BUSY at once, without
    calling the busy handler, while another connection reads it: several services (or threads)
    opening one new database together would fail here. So the refusal is retried, with backoff,
    for as long as the busy timeout allows.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def describe_failure(url: str, error: BaseException) -> str:
    """One line saying why the database at ``url`` cannot be used (never with its password).

    Args:
        url: The SQLAlchemy URL as given.
        error: What opening or migrating it raised.

    Returns:
        The message.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"the database URL cannot be parsed; expected {_EXAMPLE_URLS}"
    shown = parsed.render_as_string(hide_password=True)
    if isinstance(error, NoSuchModuleError):
        kind = parsed.drivername
        return f"unknown kind of database {kind!r} in {shown}; expected {_EXAMPLE_URLS}"
    if isinstance(error, ImportError):
        hint = ""
        if parsed.get_backend_name() == "postgresql":
            hint = (
                "; for PostgreSQL: pip install 'prefect-qiskit-runtime[postgres]' and use a "
                "postgresql+psycopg:// URL"
            )
        module = error.name or str(error)
        return f"the driver of {shown} is not installed (no module {module!r}){hint}"
    reason = error.orig if isinstance(error, DBAPIError) else error
    detail = " ".join(str(reason).split()) or type(reason).__name__
    return f"cannot use the database {shown}: {detail}"


def rowcount(result: Any) -> int:
    """The number of rows a DML statement matched.

    Args:
        result: What ``execute`` returned.

    Returns:
        The row count (0 when the result has none).
    """
    # ``Session.execute`` is typed as returning ``Result``; DML statements give a ``CursorResult``.
    return int(getattr(result, "rowcount", 0) or 0)


class StoreBase:
    """The engine and transactions every part of the store works in.

    Args:
        url: SQLAlchemy URL: SQLite (files get WAL, ``busy_timeout``, ``synchronous=NORMAL``) or
            PostgreSQL (``postgresql+psycopg://…``).
        create: Create or upgrade the schema (the migrations; see :meth:`StoreBase.migrate`).
        busy_timeout: SQLite only: seconds to wait for a lock held by another connection.
    """

    def __init__(
        self, url: str, *, create: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self.url = url
        try:
            self.engine = make_engine(url, busy_timeout)
        except (ArgumentError, ImportError) as exc:
            raise DatabaseUnavailable(describe_failure(url, exc)) from exc
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._skip_locked = self.engine.dialect.name in {"postgresql", "mysql", "mariadb", "oracle"}
        self._update_returning = bool(getattr(self.engine.dialect, "update_returning", False))
        #: Short reads may run on the event loop: a WAL reader never waits for a writer, and a
        #: local file read is cheaper than a hop to a worker thread. A networked database is not.
        self.inline_reads = self.is_sqlite
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time anyway; queueing our own threads here is cheaper than the
        # busy handler's sleeps.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if create:
            self.migrate()

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest revision (a no-op when it is there).

        Raises:
            DatabaseUnavailable: The database cannot be reached, or its schema cannot be upgraded.
        """
        from prefect_qiskit_runtime.server import migrations

        try:
            with self.core_read() as conn:
                if migrations.current_revision(conn) == migrations.HEAD:
                    return
            with self.core_write() as conn:
                migrations.upgrade(conn)
        except (DBAPIError, migrations.SchemaError) as exc:
            self.engine.dispose()
            raise DatabaseUnavailable(describe_failure(self.url, exc)) from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        with self._session() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session that commits at the end (or rolls back on an exception)."""
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self._session() as session:
            if self.is_sqlite:
                session.connection(execution_options={"sqlite_immediate": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def core_read(self) -> Iterator[Connection]:
        """A Core connection for reading (the hot paths skip the ORM's unit of work)."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def core_write(self) -> Iterator[Connection]:
        """A Core connection in a write transaction: committed at the end, rolled back on error.

        Same locking as :meth:`write` (SQLite: ``BEGIN IMMEDIATE`` under the process's write lock).
        """
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
