"""Fixtures of the Prefect-layer tests: blocks on the service, the example flows, polling helpers.

Every test here uses the session's Prefect test server (``prefect_server``, tests/conftest.py);
the runtime service is the real one from there too. Tests that need what that ephemeral server
lacks (its services, the UI) start a full ``prefect server start`` of their own with
``prefect_helpers.full_prefect_server``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect_helpers import embedded_png_sizes, wait_for

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"


@pytest.fixture(scope="session", autouse=True)
def _prefect_api(prefect_server: str) -> str:
    """Every test of this directory talks to the session's Prefect API."""
    return prefect_server


@pytest.fixture(scope="session")
def flows_on_path() -> Iterator[Path]:
    """Make the example flows importable (``import vqe``), as ``python flows/NAME.py`` does."""
    sys.path.insert(0, str(FLOWS_DIR))
    yield FLOWS_DIR
    sys.path.remove(str(FLOWS_DIR))


@pytest.fixture(scope="session")
def credentials(service: Any) -> Any:
    """Credentials of user ``alice`` (may upload) on the test service."""
    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeCredentials

    return QiskitRuntimeCredentials(url=service.url, token=service.add_user("alice"))


@pytest.fixture(scope="session")
def backend(credentials: Any) -> Any:
    """Aer on the test service, retrying without delay."""
    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend

    return QiskitRuntimeBackend(
        credentials=credentials, backend_name="aer_simulator", retry_delay_seconds=0
    )


@pytest.fixture(scope="session")
def saved_backend(backend: Any) -> str:
    """The backend block saved in the Prefect API as ``test-backend`` (for deployments)."""
    backend.save("test-backend", overwrite=True)
    return "test-backend"


@pytest.fixture(scope="session")
def runtime(credentials: Any) -> Any:
    """A plain client of the test service, for checking what the service holds."""
    from prefect_qiskit_runtime.client import RuntimeService

    return RuntimeService(url=credentials.url, token=credentials.token.get_secret_value())


@pytest.fixture(scope="session")
def poll() -> Callable[..., Any]:
    """The :func:`wait_for` helper as a fixture."""
    return wait_for


def final_task_run(task_run_id: Any, timeout: float = 60.0) -> Any:
    """The task run as the API records it once its final state has arrived.

    Task run states reach the API as events, a moment after the task ended in this process.
    """
    from prefect import get_client

    def read() -> Any:
        with get_client(sync_client=True) as client:
            run = client.read_task_run(task_run_id)
        return run if run.state is not None and run.state.is_final() else None

    return wait_for(read, timeout, f"task run {task_run_id} to be final in the API")


@pytest.fixture(scope="session")
def task_run_in_api() -> Callable[..., Any]:
    """The :func:`final_task_run` helper as a fixture."""
    return final_task_run


@pytest.fixture(scope="session")
def png_sizes() -> Callable[[str], list[tuple[int, int]]]:
    """The :func:`embedded_png_sizes` helper as a fixture."""
    return embedded_png_sizes
