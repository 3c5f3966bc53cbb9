"""Routes of ``/api/v1/sessions``: sessions and batches."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from prefect_qiskit_runtime.server.api.parsing import json_body, json_request_body
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.schemas import SessionCreate, SessionUpdate
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import modern_sessions as sessions

from .auth import modern_user
from .backends import API

router = APIRouter(tags=["modern: sessions"])
SessionId = Path(max_length=64, description="The session's id.")


@router.post(
    f"{API}/sessions",
    status_code=201,
    summary="Open a session (mode dedicated) or a batch (mode batch)",
    openapi_extra=json_request_body(SessionCreate),
)
def create_session(
    request: Request,
    user: User = Depends(modern_user),
    body: SessionCreate = Depends(json_body(SessionCreate)),
) -> Response:
    """The new session's details; jobs join it by its ``id``."""
    return JSONResponse(sessions.create(runtime_of(request), user, body), status_code=201)


@router.get(f"{API}/sessions/{{session_id}}", summary="A session's details")
def session_details(
    request: Request, session_id: str = SessionId, user: User = Depends(modern_user)
) -> dict[str, Any]:
    """State (open, active, inactive, closed), ``accepting_jobs``, timestamps, usage."""
    return sessions.details(runtime_of(request), user, session_id)


@router.patch(
    f"{API}/sessions/{{session_id}}",
    status_code=204,
    summary="Close a session: it accepts no more jobs, its pending jobs finish",
    openapi_extra=json_request_body(SessionUpdate),
)
def update_session(
    request: Request,
    session_id: str = SessionId,
    body: SessionUpdate = Depends(json_body(SessionUpdate)),
    user: User = Depends(modern_user),
) -> Response:
    """``{"accepting_jobs": false}``."""
    sessions.update(runtime_of(request), user, session_id, body.accepting_jobs)
    return Response(status_code=204)


@router.delete(
    f"{API}/sessions/{{session_id}}/close",
    status_code=204,
    summary="Cancel a session: close it and cancel its queued and running jobs",
)
def cancel_session(
    request: Request, session_id: str = SessionId, user: User = Depends(modern_user)
) -> Response:
    """Running jobs of the session are killed."""
    sessions.cancel(runtime_of(request), user, session_id)
    return Response(status_code=204)


__all__ = ["router"]
