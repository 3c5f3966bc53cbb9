"""Accounts, token checks, the JSON error shape, and the account-discovery API the old client calls.

``IBMQ.enable_account(token, url="http://HOST:PORT/api")`` walks ``/api/version``,
``/api/users/loginWithToken``, ``/api/users/me``, ``/api/Network`` and one devices list per
hub/group/project (``spec/runtime-api.md`` §2) before it touches the runtime API. Every user has the
single hub/group/project ``local/default/main``. The access token handed out by ``loginWithToken``
is the API token itself, so a token works the same on every endpoint.

Token checks are served from a small in-process cache (:class:`TokenCache`: SHA-256 of the token →
user, for :data:`TOKEN_CACHE_SECONDS`), because a database lookup per request was the largest single
cost of a trivial request. ``POST /runtime/logout`` forgets the caller's entry (the spec's "clears
the server's authorisation cache"); a change made outside the service process (``users add
--can-upload``, a token removed from the database) takes effect within the cache's lifetime.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.server.store import (
    DEFAULT_GROUP,
    DEFAULT_HUB,
    DEFAULT_PROJECT,
    Store,
    User,
    hash_token,
    isoformat,
)

logger = logging.getLogger("prefect_qiskit_runtime.server.auth")

TOKEN_HEADER = "X-Access-Token"
#: Seconds a successful token check is reused without asking the database.
TOKEN_CACHE_SECONDS = 30.0
#: Tokens remembered at most (the oldest entry makes room).
TOKEN_CACHE_SIZE = 4096
#: Longest token worth hashing; longer ones are unknown by construction.
MAX_TOKEN_LENGTH = 512

_T = TypeVar("_T")


class TokenCache:
    """Recently authenticated tokens: the SHA-256 of a token → its user, for ``ttl`` seconds.

    Only successful checks are remembered, so a token created a moment ago works at once, and an
    unknown token always costs a lookup. Entries expire after ``ttl`` seconds, which bounds how long
    a change made outside this process (a token removed from the database, a right granted by the
    CLI) goes unseen. Thread-safe.

    Args:
        store: Where tokens are looked up on a miss.
        ttl: Seconds an entry is trusted.
        max_entries: Entries kept at most; the oldest is dropped first.
        clock: Monotonic clock (tests pass their own).
        resolve: The lookup on a miss; ``store.user_for_token`` (API tokens) by default, the
            modern API passes ``store.user_for_access_token``.

    Example:
        >>> cache = TokenCache(store, ttl=30)  # doctest: +SKIP
        >>> cache.lookup(token).name  # doctest: +SKIP
        'alice'
    """

    def __init__(
        self,
        store: Store,
        ttl: float = TOKEN_CACHE_SECONDS,
        max_entries: int = TOKEN_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        resolve: Callable[[str], User | None] | None = None,
    ) -> None:
        self.store = store
        self._resolve = resolve or store.user_for_token
        self.ttl = ttl
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, User]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, token: str | None) -> User | None:
        """The user of ``token`` if a fresh entry exists (never touches the database)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[digest]
                return None
            return entry[1]

    def lookup(self, token: str | None) -> User | None:
        """The user of ``token``: from the cache, else from the store (then remembered).

        Blocking on a miss; the event loop calls :func:`authenticate` instead.
        """
        user = self.cached(token)
        if user is not None or not token or len(token) > MAX_TOKEN_LENGTH:
            return user
        user = self._resolve(token)
        if user is not None:
            digest = hash_token(token)
            with self._lock:
                self._entries.pop(digest, None)
                while len(self._entries) >= self.max_entries:
                    self._entries.popitem(last=False)
                self._entries[digest] = (self._clock() + self.ttl, user)
        return user

    def forget(self, token: str | None) -> None:
        """Drop the entry of ``token`` (logout): its next use is checked against the store."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return
        with self._lock:
            self._entries.pop(hash_token(token), None)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()


async def store_read(store: Store, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a short read of the store from the event loop.

    SQLite in WAL mode never blocks a reader, and a read costs less than the hop to a worker thread
    and back, so SQLite reads run inline; other databases (a network round trip away) are read from
    the thread pool.

    Args:
        store: The store (its ``inline_reads`` decides).
        fn: A read-only store function.
        args: Its positional arguments.
        kwargs: Its keyword arguments.

    Returns:
        What ``fn`` returns.
    """
    if store.inline_reads:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def authenticate(tokens: TokenCache, token: str | None) -> User | None:
    """The user of ``token`` without leaving the event loop when the cache knows it."""
    user = tokens.cached(token)
    if user is None and token:
        user = await store_read(tokens.store, tokens.lookup, token)
    return user


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


def get_store(request: Request) -> Store:
    """The store of the app serving ``request``."""
    store: Store = request.app.state.runtime.store
    return store


def get_tokens(request: Request) -> TokenCache:
    """The token cache of the app serving ``request``."""
    tokens: TokenCache = request.app.state.runtime.tokens
    return tokens


async def current_user(
    request: Request,
    x_access_token: str | None = Header(
        default=None, alias=TOKEN_HEADER, description="API token of the caller."
    ),
) -> User:
    """Authenticate the caller by its ``X-Access-Token`` header (a coroutine: no thread hop).

    Raises:
        ApiError: 401 if the token is missing or unknown.
    """
    if not x_access_token:
        raise ApiError(401, "UNAUTHORIZED", f"Missing {TOKEN_HEADER} header.")
    user = await authenticate(get_tokens(request), x_access_token)
    if user is None:
        raise ApiError(401, "UNAUTHORIZED", "Invalid or unknown access token.")
    return user


def root_url(request: Request) -> str:
    """``scheme://host:port`` of the request, as the client reached the service (no trailing /)."""
    return str(request.base_url).rstrip("/")


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
    body = await _json_body(request)
    token = body.get("apiToken") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ApiError(401, "UNAUTHORIZED", "Missing apiToken.")
    user = await authenticate(get_tokens(request), token)
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
    from prefect_qiskit_runtime.server.usecases.service import backend_configurations

    return backend_configurations()


@router.post("/runtime/logout", status_code=204, summary="Forget the caller's session")
async def logout(request: Request, user: User = Depends(current_user)) -> Response:
    """Clear the caller's entry in the authorisation cache; later calls with the same token keep
    working (they are checked against the store again)."""
    get_tokens(request).forget(request.headers.get(TOKEN_HEADER))
    return Response(status_code=204)


__all__ = [
    "TOKEN_CACHE_SECONDS",
    "TOKEN_HEADER",
    "ApiError",
    "TokenCache",
    "authenticate",
    "current_user",
    "error_response",
    "get_store",
    "get_tokens",
    "root_url",
    "router",
    "store_read",
]
