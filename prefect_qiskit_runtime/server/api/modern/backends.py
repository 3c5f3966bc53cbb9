"""Routes of ``/api/v1/backends`` and the instance's usage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import modern_backends as backends
from prefect_qiskit_runtime.server.usecases import modern_identity as identity

from .auth import modern_user

API = "/api/v1"
router = APIRouter(tags=["modern: backends"])
BackendName = Path(max_length=200, description="A backend of the catalogue.")


@router.get(f"{API}/backends", summary="The backends, their status and queues")
def list_backends(request: Request, user: User = Depends(modern_user)) -> dict[str, Any]:
    """``{"devices": [...]}``."""
    return backends.list_devices(runtime_of(request))


@router.get(f"{API}/backends/{{name}}/configuration", summary="A backend's configuration")
def backend_configuration(
    name: str = BackendName, user: User = Depends(modern_user)
) -> dict[str, Any]:
    """The document ``qiskit-ibm-runtime`` builds the backend's Target from."""
    return backends.configuration(name)


@router.get(f"{API}/backends/{{name}}/properties", summary="A backend's properties (none)")
def backend_properties(
    name: str = BackendName, user: User = Depends(modern_user)
) -> dict[str, Any]:
    """Empty: no calibration data is published."""
    return backends.properties(name)


@router.get(f"{API}/backends/{{name}}/status", summary="A backend's status")
def backend_status(
    request: Request, name: str = BackendName, user: User = Depends(modern_user)
) -> dict[str, Any]:
    """Always online; ``length_queue`` is the jobs waiting for it."""
    return backends.status(runtime_of(request), name)


@router.get(f"{API}/instances/usage", summary="The instance's usage this month (no limit)")
def instance_usage(request: Request, user: User = Depends(modern_user)) -> dict[str, Any]:
    """Seconds the caller's jobs ran this calendar month."""
    return identity.usage(runtime_of(request), user)


__all__ = ["API", "router"]
