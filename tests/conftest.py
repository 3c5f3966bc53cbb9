"""Shared fixtures: a real runtime service under uvicorn on 127.0.0.1, and users with tokens.

The service runs in its own process, started through the package's own CLI exactly as a user would
start it, so every test talks to it over real HTTP and websockets. Helpers live in
``service_helpers.py``; area fixtures live in ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from database_helpers import POSTGRES_ENV, fresh_schema, postgres_base_url
from service_helpers import RunningService, start_service, stop_service

from prefect_qiskit_runtime.server.config import sqlite_url

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--postgres-url",
        default=os.environ.get(POSTGRES_ENV),
        help=f"PostgreSQL database for the database-parametrized tests (default ${POSTGRES_ENV}); "
        "each test gets a schema of its own",
    )


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test (skipped without a PostgreSQL)."""
    yield from fresh_schema(postgres_base_url(request.config))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for one test: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "runtime.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """One real service for the session: users ``alice`` (may upload) and ``bob`` (may not)."""
    svc = start_service(tmp_path_factory.mktemp("service-home"), "--workers", "2")
    svc.add_user("alice", can_upload=True)
    svc.add_user("bob", can_upload=False)
    yield svc
    stop_service(svc)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prefect API (``prefect_test_harness``) for the session, started on first use; yields URL.

    It takes about 15-20 s to start on two cores; ``PREFECT_HOME`` is a temporary directory and
    analytics are off.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    settings = {
        PREFECT_HOME: str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        # Logs reach the API sooner, so tests reading them back wait less.
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL: 0.3,
    }
    with temporary_settings(settings), prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session", autouse=True)
def _isolated_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the embedded service and Prefect state of the test run out of the user's home."""
    home = tmp_path_factory.mktemp("embedded-home")
    old = os.environ.get("PREFECT_QISKIT_RUNTIME_HOME")
    os.environ["PREFECT_QISKIT_RUNTIME_HOME"] = str(home)
    yield
    if old is None:
        os.environ.pop("PREFECT_QISKIT_RUNTIME_HOME", None)
    else:
        os.environ["PREFECT_QISKIT_RUNTIME_HOME"] = old
    # The embedded service exits when idle; stop it now so the run leaves nothing behind.
    subprocess.run(
        [sys.executable, "-m", "prefect_qiskit_runtime.cli", "server", "stop"],
        env={**os.environ, "PREFECT_QISKIT_RUNTIME_HOME": str(home)},
        capture_output=True,
        timeout=60,
        check=False,
    )
