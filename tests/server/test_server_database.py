"""The service on PostgreSQL, and the one-line start-up errors of a database it cannot use.

The PostgreSQL tests need ``PQR_TEST_POSTGRES_URL`` (see ``tests/database_helpers.py``); each gets a
schema of its own. Services are started through the CLI with ``--database-url``, as a user would.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from server_helpers import PUBLISHER, SLEEPER, Api
from service_helpers import RunningService, cli, start_service, stop_service


def _add_user(service: RunningService, url: str, name: str) -> Api:
    """Create an uploader with ``users add --database-url`` (the store is not under the home)."""
    out = cli(
        "users", "add", name, "--can-upload", "--home", str(service.home), "--database-url", url
    )
    token = out.stdout.strip().splitlines()[-1]
    service.tokens[name] = token
    return Api(service.url, token)


# -- start-up errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://pqr:secret@127.0.0.1:1/x", r"cannot use the database .*refused"),
        ("mysql://pqr:secret@127.0.0.1/x", r"driver of mysql://pqr:\*\*\*@127.0.0.1/x is not"),
        ("foo://", r"unknown kind of database 'foo'"),
        ("not a url", r"database URL cannot be parsed"),
    ],
    ids=["unreachable", "no-driver", "unknown-scheme", "not-a-url"],
)
def test_start_refuses_a_database_it_cannot_use_in_one_line(
    tmp_path: Path, url: str, expected: str
) -> None:
    _assert_start_refused(tmp_path, expected, "--database-url", url)


def test_start_without_the_postgresql_driver_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg missing (a package on the path that fails to import, as an absent one does)."""
    fake = tmp_path / "path" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")])
    )
    url = "postgresql+psycopg://pqr:secret@127.0.0.1:5432/x"
    expected = r"no module 'psycopg'.*prefect-qiskit-runtime\[postgres\]"
    _assert_start_refused(tmp_path / "home", expected, "--database-url", url)


def test_start_refuses_a_schema_it_cannot_upgrade_in_one_line(tmp_path: Path) -> None:
    """A SQLite file with one of the store's tables but not the rest is left alone."""
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(home / "runtime.db") as conn:
        conn.execute("CREATE TABLE users (id VARCHAR(64) PRIMARY KEY)")
    _assert_start_refused(home, r"missing: idempotency_keys, ")
    with sqlite3.connect(home / "runtime.db") as conn:
        assert [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ] == ["users"]


def _assert_start_refused(home: Path, expected: str, *args: str) -> None:
    """``server start`` fails with one stderr line matching ``expected``: no traceback, no
    password."""
    result = cli("server", "start", "--home", str(home), "--port", "0", *args, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and re.search(expected, lines[0]), lines[0]


# -- a service on PostgreSQL -----------------------------------------------------------------------


def test_a_service_on_postgresql_runs_cancels_and_recovers_after_kill_9(
    tmp_path: Path, postgres_url: str
) -> None:
    """Submit, run, cancel; kill -9 and start again with another home: the state is all in the
    database (the running job ends SERVICE_RESTARTED, the queued one runs)."""
    first = start_service(tmp_path / "first", "--workers", "1", "--database-url", postgres_url)
    try:
        api = _add_user(first, postgres_url, "pg-user")
        publisher = api.upload(PUBLISHER, "pg-publisher")
        sleeper = api.upload(SLEEPER, "pg-sleeper")
        done = api.run(publisher, {"iterations": 2})
        assert api.wait(done)["status"] == "COMPLETED"
        assert api.get(f"/jobs/{done}/results").text == '"foo"'
        cancelled = api.run(sleeper)
        api.wait_running(cancelled)
        assert api.request("POST", f"/jobs/{cancelled}/cancel").status_code == 204
        job = api.wait(cancelled)
        assert job["status"] == "CANCELLED" and api.get(f"/jobs/{cancelled}/results").text == ""
        # PostgreSQL text cannot hold NUL: refused as bad input, in a body, a path or a query.
        for answer in (
            api.post_json("/programs", {"name": "bad\x00name", "data": "eA==", "cost": 60}),
            api.get("/jobs/x%00y"),
            api.get("/jobs", params={"pending": "true", "program": "a\x00b"}),
        ):
            assert answer.status_code == 400, answer.text
            assert "NUL" in answer.json()["error"]["message"]
        running = api.run(sleeper)
        api.wait_running(running)
        queued = api.run(publisher, {"iterations": 3})
        assert api.job(queued)["status"] == "QUEUED"
    finally:
        stop_service(first, signal.SIGKILL)

    second = start_service(tmp_path / "second", "--workers", "1", "--database-url", postgres_url)
    try:
        api = Api(second.url, api.token)
        lost = api.wait(running)
        assert lost["status"] == "FAILED" and lost["reason_code"] == "SERVICE_RESTARTED"
        job = api.wait(queued)
        assert job["status"] == "COMPLETED" and job["message_count"] == 3
        assert api.get(f"/jobs/{done}/interim_results").json()["messages"][0]["seq"] == 1
        assert api.job(cancelled)["status"] == "CANCELLED"
    finally:
        assert stop_service(second) == 0
