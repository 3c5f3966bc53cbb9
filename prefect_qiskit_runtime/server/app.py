"""The FastAPI application: the service's middleware, error handlers and routers.

``create_app(config)`` builds one service instance: a :class:`~.runtime.Runtime` (store, broker,
scheduler, metrics), the routers of ``server/api/`` (thin routes over the use cases of
``server/usecases/``) and the account API of ``server/auth.py``. Routes that only touch the database
are plain ``def`` functions (run in the thread pool); the ones that wait (long-polls, websocket
stream, raw bodies) are ``async``. Trips to the thread pool cost about as much as a trivial
request's SQL, so the per-request path avoids them: the token check is a coroutine served from the
authorisation cache (``auth.TokenCache``), and the async routes read a SQLite store inline
(``auth.store_read``). Every error answer has the body ``{"error": {"message", "code"}}``; no input,
however malformed, should produce a 500.

The URL layout and the wire extensions are fixed in ``docs/internals.md``; the protocol the old
client speaks is ``spec/runtime-api.md``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.server import auth
from prefect_qiskit_runtime.server.api import ROUTERS
from prefect_qiskit_runtime.server.api.parsing import describe_validation, json_body
from prefect_qiskit_runtime.server.api.render import job_json_text, program_json
from prefect_qiskit_runtime.server.auth import ApiError, error_response
from prefect_qiskit_runtime.server.config import ServiceConfig
from prefect_qiskit_runtime.server.runtime import Activity, Metrics, Runtime, default_executor
from prefect_qiskit_runtime.server.schemas import JobCreate, ProgramCreate, ProgramUpdate
from prefect_qiskit_runtime.server.store import DuplicateProgramError, ForbiddenError, StoreError
from prefect_qiskit_runtime.server.usecases.errors import (
    InvalidArgument,
    InvalidState,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    UseCaseError,
)

logger = logging.getLogger("prefect_qiskit_runtime.server")

_STATUS_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_REQUEST",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

#: The HTTP status of each kind of use-case error.
_USE_CASE_STATUS: dict[type[UseCaseError], int] = {
    InvalidArgument: 400,
    NotAuthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    InvalidState: 409,
}


# ---------------------------------------------------------------------------------------------
# Middleware: activity, metrics, body size limit


def _too_large(limit: int) -> str:
    return f"The request body exceeds the limit of {limit} bytes."


class BodyTooLarge(StarletteHTTPException):
    """The request body exceeds the service's limit (HTTP 413).

    Args:
        limit: The limit in bytes.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _has_nul(scope: Scope) -> bool:
    """Whether the request's path or query string carries a NUL character (``%00``)."""
    return "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")


class ServiceMiddleware:
    """Counts requests for the idle timeout and the metrics, and caps request bodies.

    A body is refused by its Content-Length when it announces too much, and while it is read when
    it has none (chunked): either way the answer is 413 ``PAYLOAD_TOO_LARGE``.

    Args:
        app: The ASGI application it wraps.
        runtime: Where the activity, the limit and the metrics live.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], runtime: Runtime
    ) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        activity = self.runtime.activity
        limit = self.runtime.config.max_upload_bytes
        activity.inflight += 1
        activity.touch()
        start = time.perf_counter()
        status = {"code": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            elif message["type"] == "websocket.close" and not status["code"]:
                status["code"] = 403
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            if _has_nul(scope):
                # PostgreSQL text cannot hold NUL: an id or filter with one is bad input, not a 500.
                message = "The request's path and query must not contain NUL characters."
                if scope["type"] == "http":
                    await error_response(400, "INVALID_REQUEST", message)(
                        scope, receive, send_wrapper
                    )
                else:
                    await send_wrapper({"type": "websocket.close", "code": 1008})
                return
            if scope["type"] == "http":
                length = _content_length(scope)
                if length is not None and length > limit:
                    response = error_response(413, "PAYLOAD_TOO_LARGE", _too_large(limit))
                    await response(scope, receive, send_wrapper)
                    return
                await self.app(scope, receive_wrapper, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            activity.inflight -= 1
            activity.touch()
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "WS")
            self.runtime.metrics.requests.labels(method, label, str(status["code"] or 500)).inc()
            if scope["type"] == "http":
                self.runtime.metrics.latency.labels(method, label).observe(
                    time.perf_counter() - start
                )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------
# The app


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service's ASGI application.

    Args:
        config: Service settings. The store is opened at once; the executor and the scheduler start
            with the app's lifespan.

    Returns:
        The FastAPI app; ``app.state.runtime`` is its :class:`Runtime`.

    Example:
        >>> app = create_app(ServiceConfig(home=tmp_path))  # doctest: +SKIP
        >>> uvicorn.run(app)  # doctest: +SKIP
    """
    runtime = Runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="prefect-qiskit-runtime service",
        version=__version__,
        description="The Qiskit Runtime program API (spec/runtime-api.md) on local simulators.",
        lifespan=lifespan,
        redirect_slashes=False,
        strict_content_type=False,
    )
    app.state.runtime = runtime
    app.add_middleware(ServiceMiddleware, runtime=runtime)
    _install_error_handlers(app)
    app.include_router(auth.router)
    for router in ROUTERS:
        app.include_router(router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(UseCaseError)
    async def _use_case_error(_request: Request, exc: UseCaseError) -> JSONResponse:
        return error_response(_use_case_status(exc), exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "INVALID_REQUEST", describe_validation(exc.errors()))

    @app.exception_handler(WebSocketRequestValidationError)
    async def _ws_validation_error(websocket: WebSocket, exc: Exception) -> None:
        with contextlib.suppress(Exception):
            await websocket.close(code=1008)

    @app.exception_handler(StoreError)
    async def _store_error(_request: Request, exc: StoreError) -> JSONResponse:
        if isinstance(exc, DuplicateProgramError):
            return error_response(409, exc.code, exc.message)
        if isinstance(exc, ForbiddenError):
            return error_response(403, exc.code, exc.message)
        if exc.code.endswith("NOT_FOUND"):
            return error_response(404, exc.code, exc.message)
        return error_response(400, exc.code, exc.message)

    @app.exception_handler(OperationalError)
    async def _db_busy(_request: Request, exc: OperationalError) -> JSONResponse:
        # Nothing was committed, so a retry (even of a POST) is safe.
        logger.warning("database error: %s", exc)
        return error_response(
            503, "SERVICE_UNAVAILABLE", "The database is busy; try again.", {"Retry-After": "1"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error", exc_info=exc)
        return error_response(500, "INTERNAL_ERROR", "Internal error in the runtime service.")


def _use_case_status(exc: UseCaseError) -> int:
    for kind in type(exc).__mro__:
        status = _USE_CASE_STATUS.get(kind)
        if status is not None:
            return status
    return 400  # a refusal of a kind without its own status is still the caller's fault


__all__ = [
    "Activity",
    "JobCreate",
    "Metrics",
    "ProgramCreate",
    "ProgramUpdate",
    "Runtime",
    "ServiceMiddleware",
    "create_app",
    "default_executor",
    "job_json_text",
    "json_body",
    "program_json",
]
