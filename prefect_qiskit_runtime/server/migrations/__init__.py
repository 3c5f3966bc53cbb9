"""The store's schema migrations (Alembic), run by every service at start.

``Store(url)`` calls :func:`upgrade` (``alembic upgrade head``) on SQLite and on PostgreSQL alike;
nothing calls ``metadata.create_all``. The revisions live in ``versions/``, shipped as package
data; ``0001`` is the schema as it was before migrations existed, so a database made by
``create_all`` is recognised (every table and column of ``0001`` present, no version table),
stamped ``0001`` and upgraded from there, keeping its rows. The revision is recorded in
``pqr_alembic_version``, not Alembic's default ``alembic_version``: the database may be shared with
another Alembic user (a Prefect server's own PostgreSQL database, for one).

Concurrent starts are safe: the migration runs in one write transaction (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: transactional DDL behind an advisory lock), so a second instance waits and
then finds the schema at head.

A new revision: change ``server/store/tables.py``, then from the repository root::

    alembic -c prefect_qiskit_runtime/server/migrations/alembic.ini \\
        -x url=sqlite:///scratch.db revision --autogenerate -m "what changed"

(``scratch.db`` at the previous head: ``alembic ... -x url=sqlite:///scratch.db upgrade head``),
review the generated file, and set :data:`HEAD` to its revision id (``alembic ... check`` then
finds nothing to add; the tests compare the migrated schema with the models the same way).

SQLite migrations run in batch mode (``render_as_batch``: a changed table is copied and the old
one dropped). The store's SQLite connections have foreign keys on, and a migration runs inside a
transaction, where they cannot be switched off: dropping the old ``users`` would cascade into
``tokens`` and be refused for ``programs``, so a revision that alters ``users`` must rebuild those
two as well.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest revision (checked against ``versions/`` by the tests): a database already there is
#: used without importing Alembic.
HEAD = "0003"
#: The schema of the databases made before migrations (``metadata.create_all``).
BASELINE = "0001"
#: Where the revision is recorded.
VERSION_TABLE = "pqr_alembic_version"
#: PostgreSQL advisory lock held while migrating (any constant unique to this application).
_LOCK_KEY = 0x7071_7273_6368_656D
_DIRECTORY = Path(__file__).resolve().parent
logger = logging.getLogger("prefect_qiskit_runtime.server")


class SchemaError(Exception):
    """The database's schema is not one this version of the package can use or upgrade."""


def current_revision(conn: Connection) -> str | None:
    """The revision recorded in the database, or ``None`` when it has none.

    Args:
        conn: Any connection to the database.

    Returns:
        The revision id.
    """
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def alembic_config(conn: Connection | None = None) -> Config:
    """An Alembic configuration over this directory.

    Args:
        conn: The connection ``env.py`` migrates (in its transaction); ``None`` for the offline
            mode or the ``alembic`` command line (``-x url=...``).

    Returns:
        The configuration.
    """
    from alembic.config import Config

    config = Config()
    # Interpolated by configparser: a literal "%" in the path must be doubled.
    config.set_main_option("script_location", str(_DIRECTORY).replace("%", "%%"))
    config.attributes["connection"] = conn
    return config


def upgrade(conn: Connection) -> None:
    """Bring the database to :data:`HEAD`, adopting a database made before migrations.

    Args:
        conn: A connection inside a write transaction; the migration commits with it.

    Raises:
        SchemaError: The database is newer than this package, or it has some of the store's
            tables without being the baseline schema.
    """
    if conn.dialect.name == "postgresql":
        # Transaction-scoped: released by the commit (or rollback) of the caller's transaction.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    current = current_revision(conn)
    if current == HEAD:
        return  # another instance migrated it while this one waited
    with _quiet_alembic():
        from alembic import command
        from alembic.script import ScriptDirectory

        config = alembic_config(conn)
        if current is not None:
            scripts = ScriptDirectory.from_config(config).walk_revisions()
            if current not in {script.revision for script in scripts}:
                raise SchemaError(
                    f"the database is at schema revision {current!r}, made by a newer version "
                    f"of prefect-qiskit-runtime (this one knows up to {HEAD!r}); upgrade the "
                    "package"
                )
        elif _adopt(conn):
            command.stamp(config, BASELINE)
            current = f"{BASELINE} (made before migrations)"
        command.upgrade(config, "head")
    logger.info("database schema upgraded from %s to %s", current or "nothing", HEAD)


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    # Alembic narrates its import and each step at INFO, which would bury a start-up error's one
    # line; the store logs one line of its own instead.
    alembic_logger = logging.getLogger("alembic")
    level = alembic_logger.level
    alembic_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        alembic_logger.setLevel(level)


def _adopt(conn: Connection) -> bool:
    """Whether the database holds a pre-migration schema (to be stamped :data:`BASELINE`).

    Raises:
        SchemaError: Some of the store's tables or columns exist, but not all of the baseline's.
    """
    from alembic import command

    from prefect_qiskit_runtime.server.store.tables import Base

    present = _columns(conn)
    if not set(Base.metadata.tables) & set(present):
        return False  # empty, or someone else's tables only: ours are created beside them
    # The baseline's tables and columns, as its revision builds them on a scratch database.
    scratch = create_engine("sqlite://")
    try:
        with scratch.begin() as scratch_conn:
            command.upgrade(alembic_config(scratch_conn), BASELINE)
            expected = _columns(scratch_conn)
    finally:
        scratch.dispose()
    expected.pop(VERSION_TABLE, None)
    missing: list[str] = []
    for name, columns in sorted(expected.items()):
        if name not in present:
            missing.append(name)
        else:
            missing += [f"{name}.{column}" for column in sorted(columns - present[name])]
    if missing:
        raise SchemaError(
            "the database has some of the service's tables but not the schema it can upgrade "
            f"(missing: {', '.join(missing)})"
        )
    return True


def _columns(conn: Connection) -> dict[str, set[str]]:
    inspector = inspect(conn)
    return {
        name: {column["name"] for column in inspector.get_columns(name)}
        for name in inspector.get_table_names()
    }


__all__ = ["BASELINE", "HEAD", "VERSION_TABLE", "SchemaError", "alembic_config", "upgrade"]
