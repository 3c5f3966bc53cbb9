"""Databases for the store and service tests: a SQLite file, or a fresh PostgreSQL schema.

PostgreSQL tests run when ``PQR_TEST_POSTGRES_URL`` (or ``pytest --postgres-url``) names a database
the tests may create schemas in, such as the throwaway cluster ``.ci/run`` starts
(``postgresql+psycopg://pqr:pqr@127.0.0.1:55432/pqr``); without it they are skipped.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

#: Environment variable naming the PostgreSQL database of the tests.
POSTGRES_ENV = "PQR_TEST_POSTGRES_URL"
SKIP_REASON = (
    f"no PostgreSQL for the tests: set {POSTGRES_ENV} (or --postgres-url) to a "
    "postgresql+psycopg:// URL; .ci/run starts a throwaway cluster"
)


def fresh_schema(base_url: str) -> Iterator[str]:
    """Create an empty schema in the database at ``base_url``; yield a URL that uses only it.

    Each connection made with the yielded URL has the schema as its ``search_path``, so the store
    creates and finds its tables there. The schema and everything in it is dropped afterwards.

    Args:
        base_url: A PostgreSQL URL whose role may create schemas in its database.

    Yields:
        The URL of the new schema.
    """
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(base_url, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            # A connection a test left open must not hang the run: give up on its locks.
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def postgres_base_url(config: pytest.Config) -> str:
    """The PostgreSQL URL of the test run; skips the test when there is none."""
    url: str | None = config.getoption("postgres_url")
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def add_program(
    store: Any,
    owner_id: str,
    *,
    name: str = "p",
    data: str = "def main(backend, user_messenger): pass\n",
    cost: int = 60,
) -> str:
    """Insert a private program of ``owner_id`` straight into ``store``; returns its id."""
    with store.write() as s:
        program_id: str = store.new_program(
            s,
            owner_id=owner_id,
            name=name,
            data=data,
            cost=cost,
            description="",
            is_public=False,
            spec="{}",
        ).id
    return program_id
