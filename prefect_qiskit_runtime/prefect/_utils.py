"""Small helpers shared by the ``tasks`` and ``loops`` packages: run context, keys, throttling, UI.

Everything here works inside and outside a Prefect run: without a run context, loggers fall back to
a module logger, artifacts and events are skipped, and idempotency keys are random.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_logger, get_run_logger

from prefect_qiskit_runtime.core.exceptions import QiskitRuntimeError

T = TypeVar("T")

EVENT_PREFIX = "prefect-qiskit-runtime"
_log = get_logger("prefect_qiskit_runtime")


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger of the current flow or task run, else the package logger."""
    try:
        return get_run_logger()
    except Exception:  # MissingContextError outside a run
        return _log


def task_run_key(suffix: str) -> str:
    """An idempotency key tied to the current task run, the same on every retry of that run.

    The attempt number is deliberately not part of it: a retry after a lost answer must present the
    same key, so the service returns the job it already made instead of making a second one.

    Args:
        suffix: Names the operation within the task (``"run"``, ``"upload"``...).

    Returns:
        ``prefect-<task run id>-<suffix>``, or a random key outside a task run.
    """
    ctx = TaskRunContext.get()
    if ctx is None:
        return f"adhoc-{uuid.uuid4()}-{suffix}"
    return f"prefect-{ctx.task_run.id}-{suffix}"


def task_run_count() -> int:
    """The attempt number of the current task run (1 on the first attempt, 1 outside a run)."""
    ctx = TaskRunContext.get()
    return max(1, int(ctx.task_run.run_count)) if ctx is not None else 1


def is_retryable_failure(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` of every job task: retry only failures marked retryable.

    A lost worker, a restarted service or a service that stayed unreachable through all transport
    retries is retryable; a program's own exception, a bad input, a missing program, a timeout or a
    cancellation is not.

    Args:
        task: The Prefect task (unused).
        task_run: The task run (unused).
        state: The failed state.

    Returns:
        Whether Prefect should run the task again.
    """
    del task, task_run
    try:
        state.result()
    except QiskitRuntimeError as exc:
        return bool(exc.retryable)
    except BaseException:
        return False
    return False


def cap_attempts(exc: BaseException, attempts: int) -> None:
    """Mark ``exc`` as final when the current task run has used its ``attempts``.

    Args:
        exc: The exception about to fail the task.
        attempts: The attempts allowed (``QiskitRuntimeBackend.job_attempts``).
    """
    if isinstance(exc, QiskitRuntimeError) and exc.retryable and task_run_count() >= attempts:
        exc.retryable = False
        run_logger().warning("Giving up after %d attempts: %s", attempts, one_line(str(exc)))


class Throttle:
    """Lets an action through at most once per ``interval`` seconds (thread-safe).

    Args:
        interval: Minimum seconds between two actions.
        wait_first: Let the first action through only ``interval`` seconds after construction,
            rather than at once.
    """

    def __init__(self, interval: float = 1.0, *, wait_first: bool = False) -> None:
        self.interval = interval
        self._last = time.monotonic() if wait_first else float("-inf")
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """Whether the action may run now; if so, the clock restarts."""
        now = time.monotonic()
        with self._lock:
            if now - self._last >= self.interval:
                self._last = now
                return True
            return False


def one_line(value: Any, limit: int = 200) -> str:
    """A one-line, length-limited rendering of ``value`` for a log line or an event payload.

    Args:
        value: Anything; strings are used as they are, other values through ``repr``.
        limit: Longest result; longer text ends with ``…``.

    Returns:
        The text without newlines.
    """
    text = value if isinstance(value, str) else repr(value)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def jsonable(value: Any, limit: int = 2000) -> Any:
    """A JSON-safe copy of ``value`` for an event payload (big or exotic values become text)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return one_line(value, limit)
    return value if len(text) <= limit else one_line(text, limit)


def in_run() -> bool:
    """Whether code runs inside a Prefect flow or task run."""
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def bind_context(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``fn`` so that it runs in a copy of the caller's context, on whatever thread calls it.

    Stream callbacks run on the client's worker thread; with the task run's context they can use the
    run logger, create artifacts and emit events that Prefect links to the run.
    """
    ctx = contextvars.copy_context()
    lock = threading.Lock()  # one Context cannot be entered by two threads at once

    def wrapper(*args: Any, **kwargs: Any) -> T:
        with lock:
            return ctx.run(fn, *args, **kwargs)

    return wrapper


class QuietCompletions(logging.Filter):
    """Drops the "Finished in state Completed()" line of task runs whose name has a given prefix.

    A hybrid loop makes one task run per evaluation; Prefect's line for each successful one costs a
    rich console render and an API log record (a few milliseconds per iteration) and says nothing
    that the task run's state does not. Failures, retries and every other record pass.

    Args:
        prefix: Task run names to quiet (``"iteration-"``).
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is kept."""
        if record.levelno != logging.INFO:
            return True
        name = getattr(record, "task_run_name", None)
        if not (isinstance(name, str) and name.startswith(self.prefix)):
            return True
        return not str(record.msg).startswith("Finished in state Completed")


@contextlib.contextmanager
def quiet_task_completions(prefix: str, enabled: bool = True) -> Iterator[None]:
    """Install :class:`QuietCompletions` on Prefect's task run logger for the ``with`` block.

    Args:
        prefix: Task run names to quiet.
        enabled: ``False`` leaves logging untouched.
    """
    if not enabled:
        yield
        return
    logger = logging.getLogger("prefect.task_runs")
    quiet = QuietCompletions(prefix)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


# --- Prefect UI calls, always synchronous ------------------------------------------------------
# The artifact functions dispatch on the *run's* kind: inside an async task they return a coroutine
# even on a worker thread. The tasks' shared code is synchronous, so it asks for the sync form.


def _create_artifact(kind: str, failure_level: int, **fields: Any) -> UUID | None:
    """Create a ``kind`` artifact (``prefect.artifacts.create_<kind>_artifact``) when in a run.

    Returns its id; ``None`` when not in a run, or (logged at ``failure_level``) when the API call
    fails: the UI is best effort, the job result matters more.
    """
    if not in_run():
        return None
    from prefect import artifacts

    factory = getattr(artifacts, f"create_{kind}_artifact")
    try:
        made: Any = factory(**fields, _sync=True)
        return cast(UUID, made)
    except Exception:
        _log.log(
            failure_level, "Could not create %s artifact %s", kind, fields.get("key"), exc_info=True
        )
        return None


def create_progress(progress: float, description: str, key: str | None = None) -> UUID | None:
    """Create a progress artifact; ``None`` (and a debug log) when not in a run or on failure."""
    return _create_artifact(
        "progress", logging.DEBUG, progress=progress, key=key, description=description
    )


def update_progress(
    artifact_id: UUID | None, progress: float, description: str | None = None
) -> None:
    """Update a progress artifact made by :func:`create_progress` (no-op for ``None``)."""
    update_artifact(artifact_id, max(0.0, min(100.0, progress)), description)


def update_artifact(artifact_id: UUID | None, data: Any, description: str | None = None) -> bool:
    """Replace an artifact's data (and description, unless ``None``) in place; never raises.

    The artifact keeps its id and its version under its key, so a chart redrawn while a loop runs
    stays one artifact in the UI rather than one version per redraw.

    Args:
        artifact_id: The artifact; ``None`` (none was made) does nothing.
        data: The new data: markdown text, a progress number...
        description: The new description; ``None`` keeps the old one.

    Returns:
        Whether the API took the update.
    """
    if artifact_id is None:
        return False
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactUpdate

    # Fields left out, not set to None: the API would clear a description given as None.
    fields: dict[str, Any] = {"data": data}
    if description is not None:
        fields["description"] = description
    try:
        with get_client(sync_client=True) as client:
            client.update_artifact(artifact_id=artifact_id, artifact=ArtifactUpdate(**fields))
        return True
    except Exception:
        _log.debug("Could not update artifact %s", artifact_id, exc_info=True)
        return False


def create_table(table: list[dict[str, Any]], key: str | None, description: str) -> UUID | None:
    """Create a table artifact when in a run."""
    return _create_artifact("table", logging.WARNING, table=table, key=key, description=description)


def create_markdown(markdown: str, key: str | None, description: str) -> UUID | None:
    """Create a markdown artifact when in a run."""
    return _create_artifact(
        "markdown", logging.WARNING, markdown=markdown, key=key, description=description
    )


def create_link(link: str, text: str, description: str) -> UUID | None:
    """Create a link artifact (no key: it belongs to its run, not to an artifact collection)."""
    return _create_artifact(
        "link", logging.WARNING, link=link, link_text=text, key=None, description=description
    )


def earlier_attempt_artifacts(kind: str) -> list[Any] | None:
    """The ``kind`` artifacts earlier attempts of the current task run left, newest first.

    The API is asked only on a retry, since a first attempt cannot have left anything.

    Args:
        kind: The artifact type as the API stores it (``"table"``; a link is ``"markdown"``).

    Returns:
        The artifacts (``[]`` outside a task run or on a first attempt); ``None`` when the API
        could not be asked (logged at debug level).
    """
    ctx = TaskRunContext.get()
    if ctx is None or task_run_count() <= 1:
        return []
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterTaskRunId,
        ArtifactFilterType,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    only_ours = ArtifactFilter(
        task_run_id=ArtifactFilterTaskRunId(any_=[ctx.task_run.id]),
        type=ArtifactFilterType(any_=[kind]),
    )
    try:
        with get_client(sync_client=True) as client:
            return list(
                client.read_artifacts(artifact_filter=only_ours, sort=ArtifactSort.CREATED_DESC)
            )
    except Exception:
        _log.debug("Could not read the task run's artifacts", exc_info=True)
        return None


def earlier_attempt_made(kind: str, marker: str) -> bool:
    """Whether an earlier attempt of the current task run left a ``kind`` artifact about ``marker``.

    Used to make an artifact once per task run however often it is retried. If the API cannot be
    asked, the answer is ``False`` (a duplicate is better than a missing artifact).

    Args:
        kind: The artifact type as the API stores it (``"table"``; a link is ``"markdown"``).
        marker: Text the artifact's description contains (a job id).
    """
    made = earlier_attempt_artifacts(kind) or []
    return any(marker in (a.description or "") for a in made)


def emit(
    name: str,
    resource_id: str,
    *,
    resource: dict[str, str] | None = None,
    related: list[dict[str, str]] | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Emit ``prefect-qiskit-runtime.<name>`` about ``resource_id``; never raises.

    Prefect's events worker adds the current flow and task run as related resources.
    """
    from prefect.events import emit_event

    res = {"prefect.resource.id": resource_id, **(resource or {})}
    try:
        emit_event(
            event=f"{EVENT_PREFIX}.{name}", resource=res, related=related, payload=payload or {}
        )
    except Exception:
        _log.debug("Could not emit event %s", name, exc_info=True)


def artifact_key(text: str) -> str:
    """Turn ``text`` into a valid artifact key (lowercase letters, digits and dashes)."""
    key = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", key) or "artifact"


def flow_run_cancelling() -> bool:
    """Whether the current flow run has been asked to cancel (reads its state from the API).

    Used by long waits that may run on a worker thread, which never sees the SIGTERM a runner sends.
    """
    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return False
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(ctx.flow_run.id).state
    except Exception:
        _log.debug("Could not read the flow run's state", exc_info=True)
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())
