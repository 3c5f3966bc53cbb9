"""Routes about the service itself: health, metrics and the backend catalogue."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from prefect_qiskit_runtime.server.auth import current_user
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import service as service_cases

router = APIRouter()


@router.get("/health", tags=["service"], summary="Liveness and facts about this process")
def health(request: Request) -> dict[str, Any]:
    """No token needed; used by the embedded launcher and probes."""
    return service_cases.health(runtime_of(request))


@router.get("/metrics", tags=["service"], summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """Prometheus text format; no token needed."""
    body, media_type = service_cases.metrics_text(runtime_of(request))
    return Response(body, media_type=media_type)


@router.get(
    "/runtime/backends", tags=["runtime"], summary="Configuration documents of the backends"
)
def list_backends(user: User = Depends(current_user)) -> dict[str, Any]:
    """Every backend a job may name, with its configuration document."""
    return {"backends": service_cases.backend_configurations()}


__all__ = ["router"]
