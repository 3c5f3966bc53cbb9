"""Fixtures of the compatibility suite: the old client's venv and an HTTPS service for it.

The old client (``qiskit-ibmq-provider==0.20.2``) streams interim results only over ``wss://``,
so this area runs its own service with a self-signed certificate. Each ``old_scripts/oc_*.py``
script runs once per session in the old venv (one subprocess costs a few seconds of imports) and
reports every check as one JSON entry; the test modules assert on those entries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oldclient import OldClientUnavailable, ScriptRunner, ensure_old_client_venv, run_old_client
from service_helpers import RunningService, start_service, stop_service

SCRIPTS = Path(__file__).parent / "old_scripts"
#: ``script_checks.py``, shared with the modern client's scripts.
SHARED_SCRIPTS = Path(__file__).parent.parent / "client_scripts"


@pytest.fixture(scope="session")
def old_python() -> Path:
    """The Python of the cached ``qiskit-ibmq-provider==0.20.2`` venv (built on first use)."""
    try:
        return ensure_old_client_venv()
    except OldClientUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tls_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """An HTTPS service (self-signed) with users ``carol`` (may upload) and ``dave`` (may not)."""
    svc = start_service(
        tmp_path_factory.mktemp("compat-home"), "--tls-self-signed", "--workers", "2"
    )
    try:
        svc.add_user("carol", can_upload=True)
        svc.add_user("dave", can_upload=False)
        yield svc
    finally:
        stop_service(svc)


@pytest.fixture(scope="session")
def old_client_env(tls_service: RunningService) -> dict[str, str]:
    """Environment that makes the old client trust the service's self-signed certificate."""
    cert = str(tls_service.home / "tls" / "cert.pem")
    assert Path(cert).is_file(), f"no certificate at {cert}"
    return {"REQUESTS_CA_BUNDLE": cert, "WEBSOCKET_CLIENT_CA_BUNDLE": cert}


@pytest.fixture(scope="session")
def run_script(
    old_python: Path,
    tls_service: RunningService,
    old_client_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> ScriptRunner:
    """Run ``old_scripts/<name>.py`` once per session in the old venv; return its checks."""
    cache: dict[str, dict[str, Any]] = {}
    workdir = tmp_path_factory.mktemp("compat-work")

    def run(name: str) -> dict[str, Any]:
        if name not in cache:
            args = {
                "url": tls_service.url,
                "carol": tls_service.add_user("carol"),
                "dave": tls_service.add_user("dave"),
                "uid": uuid.uuid4().hex[:8],
                "program_path": str(SCRIPTS / "compat_program.py"),
                "workdir": str(workdir),
            }
            cache[name] = run_old_client(
                (SCRIPTS / f"{name}.py").read_text(),
                {**old_client_env, "COMPAT_ARGS": json.dumps(args)},
                python=old_python,
                pythonpath=[SCRIPTS, SHARED_SCRIPTS],
                timeout=420,
            )
        return cache[name]

    return run
