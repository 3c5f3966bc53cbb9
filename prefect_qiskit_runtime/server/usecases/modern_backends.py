"""Backends as the modern Qiskit Runtime API lists them: devices, configurations, status.

Everything comes from the static catalogue (``server/backends/catalogue.py``), so no Qiskit is
imported in the service process. Queue lengths are the jobs waiting for each backend now.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.server.usecases.errors import NotFound

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.runtime import Runtime


def _catalogue() -> Any:
    from prefect_qiskit_runtime.server.backends import catalogue

    return catalogue


def _known(name: str) -> Any:
    """The catalogue entry of ``name``.

    Raises:
        NotFound: ``BACKEND_NOT_FOUND`` for an unknown name.
    """
    try:
        return _catalogue().info(name)
    except KeyError:
        raise NotFound("BACKEND_NOT_FOUND", f"Backend not found: {name[:200]}") from None


def list_devices(runtime: Runtime) -> dict[str, Any]:
    """``GET /backends``: every backend with its size, status and queue.

    Args:
        runtime: The service instance.

    Returns:
        ``{"devices": [{"name", "qubits", "status", "queue_length", "is_simulator", ...}]}``.
    """
    queued = runtime.store.queued_per_backend()
    catalogue = _catalogue()
    devices = []
    for name in catalogue.names():
        b = catalogue.info(name)
        devices.append(
            {
                "name": name,
                "qubits": b.num_qubits,
                "status": {"name": "online", "reason": "available"},
                "queue_length": queued.get(name, 0),
                "is_simulator": not b.noisy,
                "processor_type": {"family": "Local simulator", "revision": b.backend_version},
                "description": b.description,
            }
        )
    return {"devices": devices}


def configuration(name: str) -> dict[str, Any]:
    """``GET /backends/{name}/configuration``.

    Raises:
        NotFound: ``BACKEND_NOT_FOUND`` for an unknown name.
    """
    _known(name)
    doc: dict[str, Any] = _catalogue().modern_configuration(name)
    return doc


def properties(name: str) -> dict[str, Any]:
    """``GET /backends/{name}/properties``: none are published (empty), so targets carry no error
    rates; the noisy devices' noise model lives where their jobs run.

    Raises:
        NotFound: ``BACKEND_NOT_FOUND`` for an unknown name.
    """
    _known(name)
    return {}


def status(runtime: Runtime, name: str) -> dict[str, Any]:
    """``GET /backends/{name}/status``.

    Raises:
        NotFound: ``BACKEND_NOT_FOUND`` for an unknown name.
    """
    b = _known(name)
    return {
        "name": name,
        "state": True,
        "status": "active",
        "message": "available",
        "length_queue": runtime.store.queued_per_backend().get(name, 0),
        "backend_version": b.backend_version,
    }


__all__ = ["configuration", "list_devices", "properties", "status"]
