"""Accounts, token checks, the JSON error shape, and the account-discovery API the old client calls.

``IBMQ.enable_account(token, url="http://HOST:PORT/api")`` walks ``/api/version``,
``/api/users/loginWithToken``, ``/api/users/me``, ``/api/Network`` and one devices list per
hub/group/project (``spec/runtime-api.md`` §2) before it touches the runtime API. Every user has the
single hub/group/project ``local/default/main``. The access token handed out by ``loginWithToken``
is the API token itself, so a token works the same on every endpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.server.store import (
    DEFAULT_GROUP,
    DEFAULT_HUB,
    DEFAULT_PROJECT,
    Store,
    User,
    create_user_token,
    isoformat,
)

logger = logging.getLogger("prefect_qiskit_runtime.server.auth")

TOKEN_HEADER = "X-Access-Token"


class ApiError(Exception):
    """An error answer: HTTP ``status``, a machine-readable ``code`` and a message for people.

    Args:
        status: HTTP status code (4xx; 5xx only for real faults).
        code: Stable error code such as ``JOB_NOT_FOUND``.
        message: What went wrong and, where it helps, what to do.
        headers: Extra response headers.
    """

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error body of the service: ``{"error": {"message": ..., "code": ...}}``."""
    return JSONResponse(
        {"error": {"message": message, "code": code, "status": status}},
        status_code=status,
        headers=headers,
    )


def add_user(
    home: Path, name: str, can_upload: bool = False, database_url: str | None = None
) -> str:
    """Create a user (or give an existing one a new token) in the service at ``home``.

    Works while the service is running: the store takes SQLite's write lock like any writer.

    Args:
        home: The service home.
        name: User name.
        can_upload: Allow uploading programs (only ever granted for an existing user).
        database_url: The service's database URL when it is not the default SQLite file.

    Returns:
        The new API token.

    Raises:
        StoreError: If the name is not allowed.

    Example:
        >>> token = add_user(tmp_path, "alice", can_upload=True)  # doctest: +SKIP
    """
    return create_user_token(home, name, can_upload, database_url)


def get_store(request: Request) -> Store:
    """The store of the app serving ``request``."""
    store: Store = request.app.state.runtime.store
    return store


def current_user(
    request: Request,
    x_access_token: str | None = Header(
        default=None, alias=TOKEN_HEADER, description="API token of the caller."
    ),
) -> User:
    """Authenticate the caller by its ``X-Access-Token`` header.

    Raises:
        ApiError: 401 if the token is missing or unknown.
    """
    if not x_access_token:
        raise ApiError(401, "UNAUTHORIZED", f"Missing {TOKEN_HEADER} header.")
    user = get_store(request).user_for_token(x_access_token)
    if user is None:
        raise ApiError(401, "UNAUTHORIZED", "Invalid or unknown access token.")
    return user


def root_url(request: Request) -> str:
    """``scheme://host:port`` of the request, as the client reached the service (no trailing /)."""
    return str(request.base_url).rstrip("/")


def _backend_configurations() -> list[dict[str, Any]]:
    try:
        from prefect_qiskit_runtime.server import backends
    except ImportError:  # the backend catalogue is optional for the discovery API itself
        return []
    return list(backends.list_configurations())


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"{}")
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "INVALID_REQUEST", f"The request body is not valid JSON: {exc}"
        ) from None


router = APIRouter(tags=["account"])


@router.get("/api/version", summary="API version (the old client checks for 'api-auth')")
def version() -> dict[str, Any]:
    """Answer the old client's first probe; it only requires the key ``api-auth``."""
    return {"api-auth": __version__, "new_api": True, "version": __version__}


@router.post(
    "/api/users/loginWithToken",
    summary="Exchange an API token for an access token",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"apiToken": {"type": "string"}},
                        "required": ["apiToken"],
                    }
                }
            }
        }
    },
)
async def login_with_token(request: Request) -> dict[str, Any]:
    """``{"apiToken": t}`` → ``{"id": t}`` when ``t`` is known, else 401."""
    from starlette.concurrency import run_in_threadpool

    body = await _json_body(request)
    token = body.get("apiToken") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ApiError(401, "UNAUTHORIZED", "Missing apiToken.")
    user = await run_in_threadpool(get_store(request).user_for_token, token)
    if user is None:
        raise ApiError(401, "UNAUTHORIZED", "Invalid or unknown API token.")
    return {"id": token, "ttl": 1209600, "userId": user.id, "created": isoformat(user.created)}


@router.get("/api/users/me", summary="The caller's account and the service URLs")
def users_me(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Advertise this same service as the account, websocket and runtime URL."""
    root = root_url(request)
    ws_root = "wss" + root[len("https") :] if root.startswith("https") else "ws" + root[4:]
    return {
        "id": user.id,
        "username": user.name,
        "email": f"{user.name}@localhost",
        "canUpload": user.can_upload,
        "urls": {
            "http": root + "/api",
            "ws": ws_root + "/ws",
            "services": {"runtime": root + "/runtime"},
        },
    }


def _network() -> list[dict[str, Any]]:
    return [
        {
            "name": DEFAULT_HUB,
            "isDefault": True,
            "groups": {
                DEFAULT_GROUP: {
                    "name": DEFAULT_GROUP,
                    "isDefault": True,
                    "projects": {
                        DEFAULT_PROJECT: {"name": DEFAULT_PROJECT, "isDefault": True},
                    },
                }
            },
        }
    ]


@router.get("/api/Network", summary="Hubs, groups and projects of the caller")
def network(user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """Every user has the one default hub/group/project ``local/default/main``."""
    return _network()


@router.get(
    "/api/Network/{hub}/Groups/{group}/Projects/{project}/devices/v/1",
    summary="Backend configurations of a hub/group/project",
)
def devices(hub: str, group: str, project: str, user: User = Depends(current_user)) -> Any:
    """The configuration document of every backend (``spec/runtime-api.md`` §2)."""
    if (hub, group, project) != (DEFAULT_HUB, DEFAULT_GROUP, DEFAULT_PROJECT):
        raise ApiError(404, "NOT_FOUND", f"Unknown hub/group/project {hub}/{group}/{project}.")
    return _backend_configurations()


@router.post("/runtime/logout", status_code=204, summary="Forget the caller's session")
def logout(user: User = Depends(current_user)) -> Response:
    """Nothing is cached per session, so later calls with the same token keep working."""
    return Response(status_code=204)


__all__ = [
    "TOKEN_HEADER",
    "ApiError",
    "add_user",
    "current_user",
    "error_response",
    "get_store",
    "root_url",
    "router",
]
