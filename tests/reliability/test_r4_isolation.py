"""R4: isolation between users and between jobs.

- A second user gets 403 or 404 from every operation of the OpenAPI document that names a program
  or a job of the first user, and changes nothing.
- Tokens are stored hashed: no token appears anywhere in the database file.
- A program cannot read the service's database file or another job's directory (Landlock), while
  it reads and writes its own directory and imports what it needs.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from reliability_support import BACKEND, WAIT_FOR_GO, until
from service_helpers import add_user, start_service, stop_service

from prefect_qiskit_runtime.client import RuntimeService

REPLACEMENT = "def main(backend, user_messenger):\n    return 'replaced'\n"

PROBE = """
import json, os

def main(backend, user_messenger, paths):
    seen = {}
    for path in paths:
        try:
            with open(path, "rb") as fh:
                fh.read(16)
            seen[path] = "read"
        except PermissionError:
            seen[path] = "denied"
        except OSError as exc:
            seen[path] = type(exc).__name__
    with open("own.txt", "w") as fh:
        fh.write("mine")
    with open("own.txt") as fh:
        seen["own"] = fh.read()
    import scipy.sparse  # a lazy import after confinement still works
    return seen
"""


def test_r4_isolation(tmp_path: Path, figures: Callable[..., str]) -> None:
    home = tmp_path / "home"
    svc = start_service(home, "--workers", "2")
    try:
        alice_token, bob_token = add_user(home, "alice"), add_user(home, "bob")
        alice = RuntimeService(svc.url, alice_token)
        program_id = alice.upload_program(
            WAIT_FOR_GO, name="r4-private", description="r4", max_execution_time=120
        )
        holder = alice.run(program_id, BACKEND, {"x": 1})
        other_dir = until(lambda: holder.interim_results(), 120, "a job to run")[0]["waiting"]
        Path(other_dir, "secret.txt").write_text("another job's file")

        probed, denied = _probe_every_operation(svc.url, bob_token, program_id, holder.job_id())
        assert denied == probed, "every probe must be refused"
        program = alice.program(program_id, refresh=True)
        assert (program.name, program.description) == ("r4-private", "r4")
        stored = alice.transport.request("GET", f"/programs/{program_id}").json()["data"]
        assert stored == WAIT_FOR_GO
        assert alice.job(holder.job_id()).state.value == "RUNNING"

        database = home / "runtime.db"
        tokens_found = _tokens_in(database, [alice_token, bob_token])
        assert tokens_found == 0

        health = requests.get(svc.url + "/health", timeout=10).json()
        if health.get("sandbox") != "landlock":
            pytest.fail(f"the job sandbox is not active: {health.get('sandbox')!r}")
        prober = alice.upload_program(
            PROBE, name="r4-probe", description="r4", max_execution_time=120
        )
        targets = [str(database), str(Path(other_dir, "secret.txt")), "/etc/hostname"]
        seen = alice.run(prober, BACKEND, {"paths": targets}).result(timeout=120)
        assert seen[str(database)] == "denied"
        assert seen[str(Path(other_dir, "secret.txt"))] == "denied"
        assert seen["/etc/hostname"] == "read"
        assert seen["own"] == "mine"
        Path(other_dir, "go").touch()
        assert holder.result(timeout=120) == 1
    finally:
        stop_service(svc)
    figures(
        "R4 isolation",
        operations_probed_as_another_user=probed,
        refused=denied,
        leaked=probed - denied,
        plaintext_tokens_in_database=tokens_found,
        sandbox=health["sandbox"],
        job_reads_of_database="denied",
        job_reads_of_another_jobs_directory="denied",
        own_directory="read and written",
    )


def _probe_every_operation(url: str, token: str, program_id: str, job_id: str) -> tuple[int, int]:
    """Call each operation with a ``program_id`` or ``job_id`` in its path as ``token``'s user."""
    document = requests.get(url + "/openapi.json", timeout=10).json()
    probed = denied = 0
    # The program API takes the token as a header, the modern API as ``Authorization: apikey``.
    headers = {"X-Access-Token": token, "Authorization": f"apikey {token}"}
    for path, operations in document["paths"].items():
        if "{program_id}" not in path and "{job_id}" not in path:
            continue
        concrete = path.replace("{program_id}", program_id).replace("{job_id}", job_id)
        for method in operations:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            # A valid body, so that only the caller's rights can decide the answer.
            if path.endswith("/data"):
                kwargs: dict[str, Any] = {"data": base64.b64encode(REPLACEMENT.encode())}
            elif path.endswith("/tags"):
                kwargs = {"json": {"tags": ["probe"]}}
            elif method == "patch":
                kwargs = {"json": {"description": "changed by another user"}}
            else:
                kwargs = {}
            answer = requests.request(method, url + concrete, headers=headers, timeout=30, **kwargs)
            probed += 1
            if answer.status_code in (403, 404):
                denied += 1
            else:
                print(f"not refused: {method.upper()} {path} -> {answer.status_code}")
    return probed, denied


def _tokens_in(database: Path, tokens: list[str]) -> int:
    """How many of ``tokens`` appear in the database file or in any text value of any table."""
    raw = database.read_bytes()
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        raw += wal.read_bytes()
    found = sum(1 for token in tokens if token.encode() in raw)
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                found += sum(
                    1
                    for value in row
                    for token in tokens
                    if isinstance(value, str) and token in value
                )
    return found
