"""Alembic environment of the store's schema.

Run by :func:`prefect_qiskit_runtime.server.migrations.upgrade` with the store's own connection
(``config.attributes["connection"]``, inside its write transaction), or by the ``alembic`` command
line with ``-x url=SQLALCHEMY_URL`` (see the package docstring), online or offline (``--sql``).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from prefect_qiskit_runtime.server.migrations import VERSION_TABLE
from prefect_qiskit_runtime.server.store.tables import Base

_OPTIONS: dict[str, Any] = {
    "target_metadata": Base.metadata,
    "version_table": VERSION_TABLE,
    # SQLite alters tables by copying them; batch mode does that for every ALTER.
    "render_as_batch": True,
    "compare_type": True,
}


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_OPTIONS)
    # Inside the caller's transaction this opens none: the caller commits.
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("name the database: alembic ... -x url=SQLALCHEMY_URL ...")
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    from prefect_qiskit_runtime.server.store.engine import StoreBase

    store = StoreBase(url, create=False)
    try:
        with store.core_write() as conn:
            _run(conn)
    finally:
        store.dispose()


_main()
