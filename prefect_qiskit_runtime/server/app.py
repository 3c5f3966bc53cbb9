"""The FastAPI application: thin routes over the store, the scheduler and the broker.

``create_app(config)`` builds one service instance. Routes that only touch the database are plain
``def`` functions (run in the thread pool); the ones that wait (long-polls, websocket stream, raw
bodies) are ``async``. Trips to the thread pool cost about as much as a trivial request's SQL, so
the per-request path avoids them: the token check is a coroutine served from the authorisation
cache (``auth.TokenCache``), and the async routes read a SQLite store inline (``auth.store_read``).
Every error answer has the body ``{"error": {"message", "code"}}``; no input, however malformed,
should produce a 500.

The URL layout and the wire extensions are fixed in ``docs/internals.md``; the protocol the old
client speaks is ``spec/runtime-api.md``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect, WebSocketState

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server import auth
from prefect_qiskit_runtime.server.auth import (
    ApiError,
    TokenCache,
    authenticate,
    current_user,
    error_response,
    store_read,
)
from prefect_qiskit_runtime.server.broker import Broker, JobEvent, Subscription
from prefect_qiskit_runtime.server.config import ServiceConfig
from prefect_qiskit_runtime.server.executors.base import Executor
from prefect_qiskit_runtime.server.scheduler import Scheduler
from prefect_qiskit_runtime.server.store import (
    DEFAULT_GROUP,
    DEFAULT_HUB,
    DEFAULT_PROJECT,
    Answer,
    DuplicateProgramError,
    ForbiddenError,
    Job,
    Program,
    Store,
    StoreError,
    User,
    isoformat,
)

logger = logging.getLogger("prefect_qiskit_runtime.server")
_M = TypeVar("_M", bound=BaseModel)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
NAMESPACE_KEYS = ("_ParameterNamespace__metadata", "_ParameterNamespace__program_params")
MAX_PAGE = 1000
#: How often waiters re-read the store in case the event came from another service instance.
RECHECK_SECONDS = 2.0
#: Extension header of ``GET /runtime/jobs/{id}/results``: the job's status when answered.
JOB_STATUS_HEADER = "X-Job-Status"

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


# ---------------------------------------------------------------------------------------------
# Request and response models (they also document the API in /openapi.json)


class ProgramCreate(BaseModel):
    """Body of ``POST /runtime/programs`` in its JSON form."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    data: str = Field(min_length=1, description="Standard base64 of the program's UTF-8 source.")
    cost: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_execution_time: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    description: str = Field(default="", max_length=100_000)
    is_public: bool = False
    spec: dict[str, Any] | None = None


class ProgramUpdate(BaseModel):
    """Body of ``PATCH /runtime/programs/{id}``: only the given fields change."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=100_000)
    cost: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    max_execution_time: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    spec: dict[str, Any] | None = None


class JobCreate(BaseModel):
    """Body of ``POST /runtime/jobs`` (``spec/runtime-api.md`` §3.4)."""

    model_config = ConfigDict(extra="ignore")

    program_id: str = Field(min_length=1, max_length=100)
    backend: str = Field(min_length=1, max_length=200)
    hub: str | None = Field(default=None, max_length=100)
    group: str | None = Field(default=None, max_length=100)
    project: str | None = Field(default=None, max_length=100)
    params: Any = None
    runtime: str | None = Field(default=None, max_length=200)
    log_level: str | None = Field(default=None, max_length=20)
    #: Extension: this job's own execution-time limit in seconds, replacing the program's ``cost``.
    max_execution_time: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)


class IdResponse(BaseModel):
    """The id of a created object."""

    id: str


# ---------------------------------------------------------------------------------------------
# Runtime state shared by the routes


@dataclass
class Activity:
    """What the idle timeout and the metrics need to know about traffic."""

    inflight: int = 0
    last: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        """Record activity now."""
        self.last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended (0 while one is in flight)."""
        return 0.0 if self.inflight else time.monotonic() - self.last


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in one process)."""

    def __init__(self, runtime: Runtime) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pqr_http_requests",
            "HTTP requests and websocket connections handled.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pqr_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            registry=self.registry,
        )
        self.jobs_submitted = Counter("pqr_jobs_submitted", "Jobs created.", registry=self.registry)
        self.jobs_finished = Counter(
            "pqr_jobs_finished",
            "Jobs that reached a final status.",
            ["status"],
            registry=self.registry,
        )
        running = Gauge(
            "pqr_jobs_running_here", "Jobs this instance runs now.", registry=self.registry
        )
        running.set_function(
            lambda: float(runtime.scheduler.running_count if runtime.scheduler else 0)
        )
        streams = Gauge(
            "pqr_stream_subscriptions",
            "Open stream and long-poll subscriptions.",
            registry=self.registry,
        )
        streams.set_function(lambda: float(runtime.broker.subscriber_count()))

        class _JobsByStatus:
            def collect(self) -> Any:
                family = GaugeMetricFamily("pqr_jobs", "Stored jobs by status.", labels=["status"])
                try:
                    counts = runtime.store.status_counts()
                except Exception:  # a scrape must never fail because the database is busy
                    counts = {}
                for state in JobState:
                    family.add_metric([state.value], float(counts.get(state.value, 0)))
                yield family

        self.registry.register(_JobsByStatus())  # type: ignore[arg-type]


class Runtime:
    """Everything one service instance holds: config, store, broker, scheduler, metrics.

    Args:
        config: Service settings.
    """

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        config.home.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.db_url)
        self.tokens = TokenCache(self.store)
        self.broker = Broker()
        self.scheduler: Scheduler | None = None
        self.executor: Executor | None = None
        self.activity = Activity()
        self.started_at = time.time()
        self.metrics = Metrics(self)

    async def start(self) -> None:
        """Prepare the store, install built-in programs, start the executor and the scheduler."""
        await asyncio.to_thread(self.store.ensure_system_user)
        if self.config.load_builtin_programs:
            await asyncio.to_thread(_install_builtins, self.store)
        factory = self.config.executor_factory or default_executor
        self.executor = factory(self.config)
        self.scheduler = Scheduler(
            self.store,
            self.broker,
            self.executor,
            self.config,
            on_job_end=lambda _job, status: self.metrics.jobs_finished.labels(status).inc(),
        )
        failed = await self.scheduler.start()
        for job_id in failed:
            self.broker.publish_final(job_id, JobState.FAILED.value)

    async def stop(self) -> None:
        """Stop the scheduler (and with it the executor) and close the database."""
        if self.scheduler is not None:
            await self.scheduler.shutdown()
        self.store.dispose()

    @property
    def idle_seconds(self) -> float:
        """Seconds with no request in flight, no open stream and no running job."""
        if self.scheduler is not None and self.scheduler.running_count:
            return 0.0
        return self.activity.idle_for()


def default_executor(config: ServiceConfig) -> Executor:
    """The local warm fork pool sized by ``config.workers``."""
    from prefect_qiskit_runtime.server.executors.local import LocalExecutor

    return LocalExecutor(
        config.workers,
        memory_limit_mb=config.memory_limit_mb,
        max_message_bytes=config.max_message_bytes,
    )


def _install_builtins(store: Store) -> None:
    try:
        from prefect_qiskit_runtime.server.programs import builtin_programs
    except ImportError:
        logger.warning("built-in programs are not available")
        return
    for program_id, source, metadata in builtin_programs():
        try:
            if store.upsert_builtin(program_id, source, metadata):
                logger.info("installed built-in program %s", program_id)
        except Exception:
            logger.exception("could not install built-in program %s", program_id)


def _backends_module() -> Any:
    try:
        from prefect_qiskit_runtime.server import backends
    except ImportError:
        return None
    return backends


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# ---------------------------------------------------------------------------------------------
# Middleware: activity, metrics, body size limit


class BodyTooLarge(StarletteHTTPException):
    """The request body exceeds the service's limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds the limit of {limit} bytes.")


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ServiceMiddleware:
    """Counts requests for the idle timeout and the metrics, and caps request bodies."""

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
            if scope["type"] == "http":
                length = _content_length(scope)
                if length is not None and length > limit:
                    response = error_response(
                        413,
                        "PAYLOAD_TOO_LARGE",
                        f"The request body exceeds the limit of {limit} bytes.",
                    )
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
# Serialisation


def program_json(program: Program, user: User, *, with_data: bool = True) -> dict[str, Any]:
    """The program object of ``spec/runtime-api.md`` §3.1 (``data`` only for its author)."""
    body: dict[str, Any] = {
        "id": program.id,
        "name": program.name,
        "description": program.description,
        "cost": program.cost,
        "max_execution_time": program.cost,
        "is_public": program.is_public,
        "creation_date": isoformat(program.creation_date),
        "update_date": isoformat(program.update_date),
        "spec": program.spec_dict,
    }
    if with_data and program.owner_id == user.id:
        body["data"] = program.data
    return body


def job_json_text(job: Job) -> str:
    """The job object of ``spec/runtime-api.md`` §3.3 plus the extras of ``docs/internals.md``, as
    JSON text. ``params`` is spliced in as stored, never decoded."""
    retryable = bool(job.reason_code) and _retryable(job.reason_code)
    rest = {
        "id": job.id,
        "hub": job.hub,
        "group": job.group,
        "project": job.project,
        "backend": job.backend,
        "status": job.status,
        "program": {"id": job.program_id},
        "created": isoformat(job.created),
        "started": isoformat(job.started),
        "ended": isoformat(job.ended),
        "reason_code": job.reason_code,
        "retryable": retryable,
        "log_level": job.log_level,
        "runtime": job.runtime,
        "message_count": job.message_count,
        "cost": job.cost,
    }
    return '{"params": ' + (job.params or "{}") + ", " + json.dumps(rest)[1:]


def _retryable(reason: str | None) -> bool:
    try:
        return ReasonCode(reason).retryable if reason else False
    except ValueError:
        return False


def _raw_json(text: str, status_code: int = 200) -> Response:
    return Response(text, status_code=status_code, media_type="application/json")


# ---------------------------------------------------------------------------------------------
# Input checks


def _decode_source(data: str) -> str:
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "INVALID_PROGRAM", "Program data must be standard base64.") from None
    return _source_text(raw)


def _source_text(raw: bytes) -> str:
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "INVALID_PROGRAM", "Program source must be UTF-8 text.") from None
    if "\x00" in source:
        raise ApiError(400, "INVALID_PROGRAM", "Program source must not contain NUL characters.")
    if not source.strip():
        raise ApiError(400, "INVALID_PROGRAM", "Program source is empty.")
    return source


def _check_spec(spec: Any) -> str:
    """Validate a program ``spec`` and return it as JSON text."""
    if spec is None:
        return "{}"
    if not isinstance(spec, dict):
        raise ApiError(400, "INVALID_METADATA", "spec must be a JSON object.")
    for key in ("parameters", "return_values", "interim_results"):
        schema = spec.get(key)
        if schema is None:
            continue
        if not isinstance(schema, dict):
            raise ApiError(400, "INVALID_METADATA", f"spec.{key} must be a JSON Schema object.")
        _check_schema(schema, f"spec.{key}")
    requirements = spec.get("backend_requirements")
    if requirements is not None:
        if not isinstance(requirements, dict):
            raise ApiError(400, "INVALID_METADATA", "spec.backend_requirements must be an object.")
        min_qubits = requirements.get("min_num_qubits")
        if min_qubits is not None and (
            isinstance(min_qubits, bool) or not isinstance(min_qubits, int) or min_qubits < 0
        ):
            raise ApiError(
                400,
                "INVALID_METADATA",
                "spec.backend_requirements.min_num_qubits must be a non-negative integer.",
            )
    try:
        return json.dumps(spec, allow_nan=False)
    except ValueError:
        raise ApiError(400, "INVALID_METADATA", "spec must not contain NaN or Infinity.") from None


def _check_schema(schema: dict[str, Any], where: str) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ApiError(
            400, "INVALID_METADATA", f"{where} is not a valid JSON Schema: {exc.message}"
        ) from None
    except Exception as exc:  # a hostile schema must not take the request down
        raise ApiError(
            400, "INVALID_METADATA", f"{where} is not a valid JSON Schema: {exc}"
        ) from None


def _normalise_params(params: Any) -> dict[str, Any]:
    """Accept the forms the old client may send (object; JSON string; one-element list)."""
    if params is None:
        return {}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except (ValueError, RecursionError):
            raise ApiError(400, "INVALID_INPUT", "params must be a JSON object.") from None
    if isinstance(params, list) and len(params) == 1:
        params = params[0]
    if not isinstance(params, dict):
        raise ApiError(400, "INVALID_INPUT", "params must be a JSON object.")
    return params


def _validate_inputs(params: dict[str, Any], spec: dict[str, Any]) -> None:
    schema = spec.get("parameters")
    if not isinstance(schema, dict) or not schema:
        return
    import jsonschema

    inputs = dict(params)
    if any(key in inputs for key in NAMESPACE_KEYS):
        # A ParameterNamespace sends every declared input, unset ones as null.
        inputs = {k: v for k, v in inputs.items() if k not in NAMESPACE_KEYS and v is not None}
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator = validator_cls(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(inputs))
    except Exception as exc:  # a broken stored schema: do not block every job of the program
        logger.warning("cannot validate inputs against the program's schema: %s", exc)
        return
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)[:200]
        prefix = f"Invalid input {where!r}: " if where else "Invalid inputs: "
        message = error.message
        if len(message) > 500:  # jsonschema quotes the offending value, which may be huge
            message = message[:500] + " …"
        raise ApiError(400, "INVALID_INPUT", prefix + message)


def _check_backend(name: str, spec: dict[str, Any]) -> None:
    backends = _backends_module()
    if backends is None:
        return
    known = list(backends.names())
    if name not in known:
        raise ApiError(
            400,
            "INVALID_BACKEND",
            f"Unknown backend {name!r}. Available backends: {', '.join(sorted(known))}.",
        )
    requirements = spec.get("backend_requirements")
    if isinstance(requirements, dict):
        min_qubits = requirements.get("min_num_qubits")
        if isinstance(min_qubits, int) and not isinstance(min_qubits, bool):
            try:
                have = backends.num_qubits(name)
            except KeyError:
                have = None
            if have is not None and have < min_qubits:
                raise ApiError(
                    400,
                    "BACKEND_REQUIREMENTS",
                    f"Backend {name!r} has {have} qubits; the program needs at least {min_qubits}.",
                )


def _check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200:
        raise ApiError(400, "INVALID_REQUEST", "Idempotency-Key must be 1 to 200 characters.")
    return key


def _program_not_found(program_id: str) -> ApiError:
    return ApiError(404, "PROGRAM_NOT_FOUND", f"Program not found: {program_id}")


def _job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "JOB_NOT_FOUND", f"Job not found: {job_id}")


def json_body(model: type[_M]) -> Callable[[Request], Awaitable[_M]]:
    """A dependency that parses the body as JSON whatever its Content-Type (the old client sends
    none, curl sends a form type) and validates it as ``model``; errors are 400s."""

    async def parse(request: Request) -> _M:
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw.strip() else None
        except (ValueError, RecursionError):
            raise ApiError(400, "INVALID_REQUEST", "The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "INVALID_REQUEST", "The request body must be a JSON object.")
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise ApiError(400, "INVALID_REQUEST", _describe_validation(exc.errors())) from None

    return parse


def _json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


IdempotencyHeader = Header(
    default=None,
    alias="Idempotency-Key",
    description="Repeating a request with the same key returns the first answer again.",
)

_PROGRAM_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ProgramCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "Program metadata as JSON."},
                    },
                    "required": ["data", "metadata"],
                }
            },
        },
    }
}
_RAW_DATA_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    }
}


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
    _add_service_routes(app)
    _add_program_routes(app)
    _add_job_routes(app)
    _add_stream_route(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "ERROR")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "INVALID_REQUEST", _describe_validation(exc.errors()))

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


def _describe_validation(errors: Any) -> str:
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "Invalid request. " + "; ".join(parts) if parts else "Invalid request."


def _add_service_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["service"], summary="Liveness and facts about this process")
    def health(request: Request) -> dict[str, Any]:
        """No token needed; used by the embedded launcher and probes."""
        runtime = _runtime(request)
        scheduler = runtime.scheduler
        return {
            "status": "ok",
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.time() - runtime.started_at, 3),
            "instance_id": scheduler.instance_id if scheduler else None,
            "running_jobs": scheduler.running_count if scheduler else 0,
            "capacity": runtime.executor.capacity if runtime.executor else 0,
            "prefect_imported": "prefect" in sys.modules,
            "qiskit_imported": "qiskit" in sys.modules,
            "database": runtime.store.engine.dialect.name,
        }

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics")
    def metrics(request: Request) -> Response:
        """Prometheus text format; no token needed."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(_runtime(request).metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/runtime/backends", tags=["runtime"], summary="Configuration documents of the backends"
    )
    def list_backends(user: User = Depends(current_user)) -> dict[str, Any]:
        """Every backend a job may name, with its configuration document."""
        backends = _backends_module()
        return {"backends": list(backends.list_configurations()) if backends else []}


def _add_program_routes(app: FastAPI) -> None:
    @app.get("/runtime/programs", tags=["programs"], summary="List programs (oldest first)")
    def list_programs(
        request: Request,
        limit: int = Query(20, ge=0, le=10**9),
        offset: int = Query(0, ge=0, le=10**9),
        user: User = Depends(current_user),
    ) -> dict[str, Any]:
        """The caller's programs and every public one; ``count`` is the exact total."""
        programs, total = _runtime(request).store.list_programs(
            user.id, min(limit, MAX_PAGE), offset
        )
        return {
            "programs": [program_json(p, user, with_data=False) for p in programs],
            "count": total,
        }

    @app.post(
        "/runtime/programs",
        tags=["programs"],
        status_code=201,
        response_model=IdResponse,
        summary="Upload a program (JSON with base64 data, or multipart form)",
        openapi_extra=_PROGRAM_UPLOAD_BODY,
    )
    async def upload_program(
        request: Request,
        user: User = Depends(current_user),
        idempotency_key: str | None = IdempotencyHeader,
    ) -> Response:
        """Create a program. 403 without upload permission, 409 for a duplicate name."""
        runtime = _runtime(request)
        if not user.can_upload:
            raise ApiError(403, "FORBIDDEN", "This account is not allowed to upload programs.")
        key = _check_idempotency_key(idempotency_key)
        if key:
            stored = await run_in_threadpool(runtime.store.stored_answer, user.id, key)
            if stored is not None:
                return JSONResponse(stored.body, status_code=stored.status_code)
        fields = await _read_upload(request, runtime.config.max_upload_bytes)

        def create(session: Any) -> Answer:
            program = runtime.store.new_program(session, owner_id=user.id, **fields)
            return Answer(201, {"id": program.id})

        answer = await run_in_threadpool(
            runtime.store.idempotent, user.id, key, "POST /runtime/programs", create
        )
        return JSONResponse(answer.body, status_code=answer.status_code)

    @app.get("/runtime/programs/{program_id}", tags=["programs"], summary="Get a program")
    def get_program(request: Request, program_id: str, user: User = Depends(current_user)) -> Any:
        """The program; ``data`` (the source) only for its author."""
        program = _runtime(request).store.get_program(program_id, user.id)
        if program is None:
            raise _program_not_found(program_id)
        return program_json(program, user)

    @app.delete(
        "/runtime/programs/{program_id}",
        tags=["programs"],
        status_code=204,
        summary="Delete a program",
    )
    def delete_program(
        request: Request, program_id: str, user: User = Depends(current_user)
    ) -> Response:
        """Delete the caller's program (its jobs stay)."""
        if not _runtime(request).store.delete_program(program_id, user.id):
            raise _program_not_found(program_id)
        return Response(status_code=204)

    @app.put(
        "/runtime/programs/{program_id}/data",
        tags=["programs"],
        status_code=204,
        summary="Replace a program's source (raw base64 body)",
        openapi_extra=_RAW_DATA_BODY,
    )
    async def update_program_data(
        request: Request, program_id: str, user: User = Depends(current_user)
    ) -> Response:
        """The body is the base64 text of the new source; ``update_date`` moves."""
        runtime = _runtime(request)
        raw = await request.body()
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ApiError(
                400, "INVALID_PROGRAM", "Program data must be standard base64."
            ) from None
        source = _decode_source(text)
        program = await run_in_threadpool(
            runtime.store.update_program, program_id, user.id, {"data": source}
        )
        if program is None:
            raise _program_not_found(program_id)
        return Response(status_code=204)

    @app.patch(
        "/runtime/programs/{program_id}",
        tags=["programs"],
        status_code=204,
        summary="Change a program's metadata",
        openapi_extra=_json_request_body(ProgramUpdate),
    )
    def update_program(
        request: Request,
        program_id: str,
        user: User = Depends(current_user),
        body: ProgramUpdate = Depends(json_body(ProgramUpdate)),
    ) -> Response:
        """Change name, description, cost and/or spec; ``spec`` is merged per top-level key."""
        store = _runtime(request).store
        program = store.get_program(program_id, user.id)
        if program is None:
            raise _program_not_found(program_id)
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name
        if body.description is not None:
            changes["description"] = body.description
        cost = body.cost if body.cost is not None else body.max_execution_time
        if cost is not None:
            changes["cost"] = cost
        if body.spec is not None:
            merged = {**program.spec_dict, **body.spec}
            changes["spec"] = _check_spec(merged)
        if store.update_program(program_id, user.id, changes) is None:
            raise _program_not_found(program_id)
        return Response(status_code=204)

    def _visibility(request: Request, program_id: str, user: User, public: bool) -> Response:
        program = _runtime(request).store.update_program(program_id, user.id, {"is_public": public})
        if program is None:
            raise _program_not_found(program_id)
        return Response(status_code=204)

    @app.put(
        "/runtime/programs/{program_id}/public",
        tags=["programs"],
        status_code=204,
        summary="Make a program public",
    )
    def make_public(
        request: Request, program_id: str, user: User = Depends(current_user)
    ) -> Response:
        """Every user may then see and run it."""
        return _visibility(request, program_id, user, True)

    @app.put(
        "/runtime/programs/{program_id}/private",
        tags=["programs"],
        status_code=204,
        summary="Make a program private",
    )
    def make_private(
        request: Request, program_id: str, user: User = Depends(current_user)
    ) -> Response:
        """Only its author may then see and run it."""
        return _visibility(request, program_id, user, False)


async def _read_upload(request: Request, limit: int) -> dict[str, Any]:
    """Parse an upload body (JSON with base64 data, or multipart) into ``new_program`` fields."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=4, max_fields=20, max_part_size=limit)
        except StarletteHTTPException:
            raise
        except Exception as exc:
            raise ApiError(400, "INVALID_REQUEST", f"Malformed multipart body: {exc}") from None
        data_field = form.get("data")
        metadata_field = form.get("metadata")
        if data_field is None:
            raise ApiError(400, "INVALID_REQUEST", "The multipart body needs a 'data' part.")
        raw = await data_field.read() if isinstance(data_field, UploadFile) else data_field.encode()
        source = _source_text(raw)
        if isinstance(metadata_field, UploadFile):
            metadata_text: str | bytes = await metadata_field.read()
        else:
            metadata_text = metadata_field or "{}"
        try:
            metadata = json.loads(metadata_text)
        except (ValueError, RecursionError):
            raise ApiError(
                400, "INVALID_METADATA", "The 'metadata' part is not valid JSON."
            ) from None
        if not isinstance(metadata, dict):
            raise ApiError(400, "INVALID_METADATA", "The 'metadata' part must be a JSON object.")
        metadata = {**metadata, "data": "eA=="}  # the source came as a file, not as base64
        body = _parse_model(ProgramCreate, metadata)
    else:
        raw_body = await request.body()
        try:
            payload = json.loads(raw_body)
        except (ValueError, RecursionError):
            raise ApiError(400, "INVALID_REQUEST", "The request body is not valid JSON.") from None
        body = _parse_model(ProgramCreate, payload)
        source = _decode_source(body.data)
    cost = body.cost if body.cost is not None else body.max_execution_time
    return {
        "name": body.name,
        "data": source,
        "cost": cost if cost is not None else 300,
        "description": body.description,
        "is_public": body.is_public,
        "spec": _check_spec(body.spec),
    }


def _parse_model(model: type[ProgramCreate], payload: Any) -> ProgramCreate:
    if not isinstance(payload, dict):
        raise ApiError(400, "INVALID_REQUEST", "The request body must be a JSON object.")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError(400, "INVALID_METADATA", _describe_validation(exc.errors())) from None


def _add_job_routes(app: FastAPI) -> None:
    @app.post(
        "/runtime/jobs",
        tags=["jobs"],
        status_code=201,
        response_model=IdResponse,
        summary="Run a program",
        openapi_extra=_json_request_body(JobCreate),
    )
    def run_job(
        request: Request,
        user: User = Depends(current_user),
        body: JobCreate = Depends(json_body(JobCreate)),
        idempotency_key: str | None = IdempotencyHeader,
    ) -> Response:
        """Validate the inputs against the program's declared parameters and queue a job."""
        runtime = _runtime(request)
        store = runtime.store
        key = _check_idempotency_key(idempotency_key)
        if key:
            stored = store.stored_answer(user.id, key)
            if stored is not None:
                return JSONResponse(stored.body, status_code=stored.status_code)
        program = store.runnable_program(body.program_id, user.id)
        if program is None:
            raise _program_not_found(body.program_id)
        hub = body.hub or DEFAULT_HUB
        group = body.group or DEFAULT_GROUP
        project = body.project or DEFAULT_PROJECT
        if (hub, group, project) != (DEFAULT_HUB, DEFAULT_GROUP, DEFAULT_PROJECT):
            raise ApiError(
                403,
                "FORBIDDEN",
                f"Hub/group/project {hub}/{group}/{project} is not available to this account.",
            )
        log_level = None
        if body.log_level is not None:
            log_level = body.log_level.upper()
            if log_level not in LOG_LEVELS:
                raise ApiError(
                    400,
                    "INVALID_REQUEST",
                    f"Invalid log_level {body.log_level!r}; use one of {', '.join(LOG_LEVELS)}.",
                )
        spec = program.spec_dict
        _check_backend(body.backend, spec)
        params = _normalise_params(body.params)
        _validate_inputs(params, spec)
        scheduler = runtime.scheduler
        # With a slot free, the job is created already claimed and handed straight to the
        # executor: no trip through the queue and the dispatcher.
        reserved = scheduler is not None and scheduler.reserve_slot()
        claimed = None
        try:
            answer, claimed = store.create_job(
                owner_id=user.id,
                program_id=program.id,
                backend=body.backend,
                params=json.dumps(params),
                hub=hub,
                group=group,
                project=project,
                log_level=log_level,
                runtime=body.runtime,
                cost=body.max_execution_time,
                idempotency_key=key,
                claim_for=scheduler.instance_id if scheduler is not None and reserved else None,
            )
        finally:
            if scheduler is not None and reserved:
                scheduler.take_reserved(claimed)
        if not answer.replayed:
            runtime.metrics.jobs_submitted.inc()
            if scheduler is not None and claimed is None:
                scheduler.kick()
        return JSONResponse(answer.body, status_code=answer.status_code)

    @app.get("/runtime/jobs", tags=["jobs"], summary="List the caller's jobs (newest first)")
    def list_jobs(
        request: Request,
        limit: int = Query(10, ge=0, le=10**9),
        offset: int = Query(0, ge=0, le=10**9),
        pending: bool | None = Query(None, description="true: QUEUED/RUNNING; false: final"),
        program: str | None = Query(None, max_length=100, description="Only this program's jobs"),
        user: User = Depends(current_user),
    ) -> Response:
        """``count`` is ``max(total, offset)`` so that the old client's paging loop ends."""
        jobs, total = _runtime(request).store.list_jobs(
            user.id, min(limit, MAX_PAGE), offset, pending, program
        )
        items = ", ".join(job_json_text(job) for job in jobs)
        return _raw_json(f'{{"jobs": [{items}], "count": {max(total, offset)}}}')

    @app.get("/runtime/jobs/{job_id}", tags=["jobs"], summary="Get a job (optionally long-poll)")
    async def get_job(
        request: Request,
        job_id: str,
        wait: float | None = Query(
            None, ge=0, allow_inf_nan=False, description="Wait up to this many seconds (<= 60)."
        ),
        user: User = Depends(current_user),
    ) -> Response:
        """With ``wait``, answer as soon as the job is final, or after ``wait`` seconds."""
        job = await _wait_for_job(_runtime(request), job_id, user, wait, light=True)
        return _raw_json(job_json_text(job))

    @app.delete("/runtime/jobs/{job_id}", tags=["jobs"], status_code=204, summary="Delete a job")
    def delete_job(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
        """Delete a job in any state; a running job is stopped first."""
        runtime = _runtime(request)
        job = runtime.store.delete_job(job_id, user.id)
        if job is None:
            raise _job_not_found(job_id)
        if runtime.scheduler is not None and job.status == JobState.RUNNING.value:
            runtime.scheduler.kill_threadsafe(job_id)
        runtime.broker.publish_final(job_id, "DELETED")
        return Response(status_code=204)

    @app.post(
        "/runtime/jobs/{job_id}/cancel", tags=["jobs"], status_code=204, summary="Cancel a job"
    )
    def cancel_job(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
        """QUEUED or RUNNING → CANCELLED at once (a running program is killed); final → 409."""
        runtime = _runtime(request)
        job, changed = runtime.store.cancel_job(job_id, user.id)
        if job is None:
            raise _job_not_found(job_id)
        if not changed:
            raise ApiError(
                409, "INVALID_STATE", f"Job {job_id} cannot be cancelled: it is {job.status}."
            )
        runtime.metrics.jobs_finished.labels(JobState.CANCELLED.value).inc()
        if runtime.scheduler is not None:
            runtime.scheduler.kill_threadsafe(job_id)
        runtime.broker.publish_final(job_id, JobState.CANCELLED.value)
        return Response(status_code=204)

    @app.get(
        "/runtime/jobs/{job_id}/results",
        tags=["jobs"],
        summary="The final result (text), the error of a failed job, or 204 while running",
        response_class=PlainTextResponse,
    )
    async def job_results(
        request: Request,
        job_id: str,
        wait: float | None = Query(
            None,
            ge=0,
            allow_inf_nan=False,
            description="Extension: wait up to this many seconds (<= 60) for the job to end.",
        ),
        user: User = Depends(current_user),
    ) -> Response:
        """COMPLETED: the RuntimeEncoder JSON of the result; FAILED / RAN TOO LONG: the error text;
        CANCELLED: empty; not final: 204. With ``wait`` (extension), answer as soon as the job is
        final, or with 204 after ``wait`` seconds. Every answer names the job's status in the
        ``X-Job-Status`` header."""
        job = await _wait_for_job(_runtime(request), job_id, user, wait, light=False)
        headers = {JOB_STATUS_HEADER: job.status}
        state = job.state
        if not state.is_final:
            return Response(status_code=204, headers=headers)
        if state is JobState.COMPLETED:
            text = job.result or "null"
        elif state is JobState.CANCELLED:
            text = ""
        else:
            text = job.error or ""
        return PlainTextResponse(text, headers=headers)

    @app.get(
        "/runtime/jobs/{job_id}/logs",
        tags=["jobs"],
        summary="The job's captured stdout, stderr and logging",
        response_class=PlainTextResponse,
    )
    def job_logs(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
        """Empty until the job ended."""
        job = _runtime(request).store.get_job(job_id, user.id)
        if job is None:
            raise _job_not_found(job_id)
        return PlainTextResponse(job.logs or "")

    @app.get(
        "/runtime/jobs/{job_id}/interim_results",
        tags=["jobs"],
        summary="Stored interim results of a job",
    )
    def interim_results(
        request: Request,
        job_id: str,
        after: int = Query(0, ge=0, le=2**31),
        user: User = Depends(current_user),
    ) -> Response:
        """``{"messages": [{"seq", "message"}]}`` in order, optionally only after ``after``."""
        store = _runtime(request).store
        if store.get_job(job_id, user.id, light=True) is None:
            raise _job_not_found(job_id)
        messages: list[tuple[int, str]] = []
        cursor = after
        while True:
            page = store.messages_after(job_id, cursor, limit=1000)
            messages.extend(page)
            if len(page) < 1000:
                break
            cursor = page[-1][0]
        return JSONResponse({"messages": [{"seq": s, "message": m} for s, m in messages]})


async def _wait_for_job(
    runtime: Runtime, job_id: str, user: User, wait: float | None, *, light: bool
) -> Job:
    """The caller's job, once final or after ``wait`` seconds (at most the service's limit).

    Raises:
        ApiError: 404 if the caller has no such job (or it was deleted while waiting).
    """
    store = runtime.store
    if not wait:
        job = await store_read(store, store.get_job, job_id, user.id, light=light)
        if job is None:
            raise _job_not_found(job_id)
        return job
    deadline = time.monotonic() + min(wait, runtime.config.max_wait_seconds)
    with runtime.broker.subscribe(job_id) as sub:
        while True:
            job = await store_read(store, store.get_job, job_id, user.id, light=light)
            if job is None:
                raise _job_not_found(job_id)
            remaining = deadline - time.monotonic()
            if job.is_final or remaining <= 0:
                return job
            event = await _next_final_event(sub, min(remaining, RECHECK_SECONDS))
            if event is not None and isinstance(event.job, Job) and event.job.is_final:
                # The scheduler published the job as it stored it: no need to read it again.
                return event.job


async def _next_final_event(sub: Subscription, timeout: float) -> JobEvent | None:
    """Wait until a ``final`` event arrives on ``sub`` (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        event = await sub.get(remaining)
        if event is None or event.kind == "final":
            return event


def _add_stream_route(app: FastAPI) -> None:
    @app.websocket("/runtime/stream/jobs/{job_id}")
    async def stream(websocket: WebSocket, job_id: str) -> None:
        """Interim results of a job.

        Plain mode (the old client): ``ACK``, then each message text once across connections (a
        per-job delivery cursor), then close 1000 when the job is final. With ``?after=SEQ``:
        ``ACK``, then ``{"seq", "message"}`` envelopes of every message after ``SEQ``, then close
        1000.
        """
        runtime = _runtime(websocket)  # type: ignore[arg-type]
        after_raw = websocket.query_params.get("after")
        after: int | None = None
        if after_raw is not None:
            try:
                after = int(after_raw)
            except ValueError:
                after = -1
            if after < 0:
                await websocket.close(code=1008, reason="after must be a non-negative integer")
                return
        token = websocket.headers.get(auth.TOKEN_HEADER)
        user = await authenticate(runtime.tokens, token)
        if user is None:
            await websocket.close(code=1008, reason="invalid or missing access token")
            return
        await websocket.accept()
        try:
            await websocket.send_text("ACK")
            stream = _Stream(runtime, websocket, job_id, user)
            await stream.run(after)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=1000)


class _Stream:
    """One websocket connection following one job."""

    def __init__(self, runtime: Runtime, websocket: WebSocket, job_id: str, user: User) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.websocket = websocket
        self.job_id = job_id
        self.user = user
        self.gone = asyncio.Event()

    async def _watch_client(self) -> None:
        # Reading is how a close frame from the client (or a dropped socket) becomes visible.
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except Exception:
            pass
        finally:
            self.gone.set()

    async def run(self, after: int | None) -> None:
        watcher = asyncio.create_task(self._watch_client())
        try:
            with self.runtime.broker.subscribe(self.job_id) as sub:
                if after is None:
                    await self._plain(sub)
                else:
                    await self._resume(sub, after)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def _wait(self, sub: Subscription) -> None:
        """Until an event arrives, the client goes away, or it is time to re-read the store."""
        get = asyncio.ensure_future(sub.get(RECHECK_SECONDS))
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (get, gone):
                fut.cancel()
        # Drain whatever else is queued: every wake-up re-reads the store anyway.
        while not sub.queue.empty():
            sub.queue.get_nowait()

    async def _job(self) -> Job | None:
        store = self.store
        return await store_read(store, store.get_job, self.job_id, self.user.id, light=True)

    async def _resume(self, sub: Subscription, after: int) -> None:
        cursor = after
        while not self.gone.is_set():
            job = await self._job()
            if job is None:
                return
            for seq, data in await store_read(
                self.store, self.store.messages_after, self.job_id, cursor
            ):
                await self.websocket.send_text(json.dumps({"seq": seq, "message": data}))
                cursor = seq
            if job.is_final:
                return
            await self._wait(sub)

    async def _plain(self, sub: Subscription) -> None:
        grace = self.runtime.config.plain_stream_grace
        job = await self._job()
        if job is None:
            return
        cursor = await run_in_threadpool(self.store.open_plain_cursor, self.job_id, grace)
        if cursor is None:
            return
        while not self.gone.is_set():
            job = await self._job()
            if job is None:
                return
            pending = await store_read(self.store, self.store.messages_after, self.job_id, cursor)
            contended = False
            for seq, data in pending:
                if self.gone.is_set():
                    return
                owned = await run_in_threadpool(self.store.advance_plain_cursor, self.job_id, seq)
                if not owned:
                    contended = True  # another plain connection of this job delivers it
                    break
                try:
                    await self.websocket.send_text(data)
                except Exception:
                    await run_in_threadpool(self.store.rewind_plain_cursor, self.job_id, seq)
                    raise
                cursor = seq
            if contended:
                fresh = await self._job()
                if fresh is None or fresh.plain_cursor is None or fresh.is_final:
                    return
                cursor = fresh.plain_cursor
            elif job.is_final:
                return
            await self._wait(sub)


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
    "program_json",
]
