"""Fixtures of the modern-client suite: the ``qiskit-ibm-runtime`` venv and a service for it.

Each ``modern_scripts/mc_*.py`` script runs once per session in the modern venv (a subprocess
costs a few seconds of imports) and reports every check as one JSON entry; the test modules
assert on those entries. The service is a real one, started through the CLI.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modernclient import ScriptRunner, ensure_modern_client_venv, oldclient
from service_helpers import RunningService, start_service, stop_service

SCRIPTS = Path(__file__).parent / "modern_scripts"
#: ``script_checks.py``, shared with the old client's scripts.
SHARED_SCRIPTS = Path(__file__).parent.parent / "client_scripts"


@pytest.fixture(scope="session")
def modern_python() -> Path:
    """The Python of the cached ``qiskit-ibm-runtime==0.51.0`` venv (built on first use)."""
    try:
        return ensure_modern_client_venv()
    except oldclient.OldClientUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def modern_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service with users ``carol`` and ``dave``."""
    svc = start_service(tmp_path_factory.mktemp("modern-home"), "--workers", "2")
    try:
        svc.add_user("carol")
        svc.add_user("dave")
        yield svc
    finally:
        stop_service(svc)


@pytest.fixture(scope="session")
def run_modern(modern_python: Path, modern_service: RunningService) -> ScriptRunner:
    """Run ``modern_scripts/<name>.py`` once per session in the modern venv; return its checks."""
    cache: dict[str, dict[str, Any]] = {}

    def run(name: str) -> dict[str, Any]:
        if name not in cache:
            args = {
                "url": modern_service.url,
                "carol": modern_service.add_user("carol"),
                "dave": modern_service.add_user("dave"),
                "uid": uuid.uuid4().hex[:8],
            }
            cache[name] = oldclient.run_old_client(
                (SCRIPTS / f"{name}.py").read_text(),
                {"MODERN_ARGS": json.dumps(args)},
                python=modern_python,
                pythonpath=[SCRIPTS, SHARED_SCRIPTS],
                timeout=600,
            )
        return cache[name]

    return run
