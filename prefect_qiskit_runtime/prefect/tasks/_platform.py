"""One primitive job of a task run on a Qiskit Runtime endpoint, through ``qiskit-ibm-runtime``.

A task run owns at most one remote job, found again on every retry:

- **Tag.** The job is submitted with the tag ``prefect-task-run-<task run id>`` (the
  ``environment.job_tags`` option), written by the endpoint in the same request that creates it.
- **Record.** Before the task waits, the job id is recorded in Prefect as a link artifact of the
  task run (to the job on its endpoint), whose description names the job: ``Primitive job `ID```.

A retry (Prefect's ``run_count`` above 1) reads the record, or, if the first attempt ended before
it was written (a lost answer, a crash, an unreachable Prefect API), lists the endpoint's jobs
carrying the tag, and re-attaches with ``service.job(job_id)`` instead of submitting again.

Abandoning a job (a timeout, a task or flow run cancellation, a failure that will not be retried)
cancels it and, when the task opened a session or batch for it, cancels that too, which closes it.
A retryable failure leaves both alone: the retry re-attaches to them.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from prefect.context import TaskRunContext

from prefect_qiskit_runtime.core.exceptions import (
    QiskitRuntimeError,
    RequestsApiError,
    RuntimeJobCancelled,
    RuntimeJobFailureError,
    RuntimeJobTimeoutError,
    RuntimeServiceUnavailable,
)
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.tasks._observe import JOB_METRICS_ARTIFACT_KEY, _plain

#: Final statuses of ``RuntimeJobV2.status()``.
FINAL_STATUSES = ("DONE", "ERROR", "CANCELLED")
#: HTTP statuses (``None``: no answer at all) after which the same request may succeed.
_RETRYABLE_HTTP = (None, 408, 429, 500, 502, 503, 504)
#: ``reason_code`` of a job that ran past its ``max_execution_time``.
_RAN_TOO_LONG = 1305
_RECORD = re.compile(r"Primitive job `([^`]+)`")
#: Longest pause between two status polls; it bounds how late a timeout or abort is noticed.
_MAX_POLL = 1.0
_CANCEL_CHECK_SECONDS = 5.0


@dataclass
class Attached:
    """The job (and session) a task run is attached to, for whoever has to abandon it."""

    job: Any = None
    own_session: bool = False


def task_run_tag() -> str | None:
    """The tag of the current task run's job (``None`` outside a task run)."""
    ctx = TaskRunContext.get()
    return None if ctx is None else f"prefect-task-run-{ctx.task_run.id}"


def translate(exc: BaseException) -> BaseException:
    """The package's exception for a ``qiskit-ibm-runtime`` one, with ``retryable`` set.

    An HTTP failure without an answer, or with 408/429/5xx, is retryable; every other client error
    is not. Exceptions of other kinds (a Prefect timeout, a cancellation) are returned unchanged.
    """
    if isinstance(exc, QiskitRuntimeError):
        return exc
    import requests

    if isinstance(exc, requests.RequestException):
        return RuntimeServiceUnavailable(f"Endpoint unreachable: {exc}", retryable=True)
    if "qiskit_ibm_runtime" not in sys.modules:  # it cannot have raised
        return exc
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError as IBMRequestsApiError
    from qiskit_ibm_runtime.exceptions import IBMError

    if isinstance(exc, IBMRequestsApiError):
        status = exc.status_code
        return RequestsApiError(
            f"Qiskit Runtime request failed: {exc}",
            status_code=status,
            retryable=status in _RETRYABLE_HTTP,
        )
    if isinstance(exc, IBMError):
        return QiskitRuntimeError(f"qiskit-ibm-runtime: {exc}", retryable=False)
    return exc


def _about(job: Any, primitive: str) -> str:
    backend = job.backend()
    name = getattr(backend, "name", backend)
    session = f", session `{job.session_id}`" if job.session_id else ""
    return f"Primitive job `{job.job_id()}`: {primitive} on `{name}`{session}"


def record_job(job: Any, primitive: str, job_url: str) -> None:
    """Record the job id in Prefect (a link artifact of the task run) before the task waits.

    A failure to write it is logged, not raised: the job's tag still identifies it for a retry.
    """
    if TaskRunContext.get() is None:
        return
    if pu.create_link(job_url, f"Primitive job {job.job_id()}", _about(job, primitive)) is None:
        pu.run_logger().warning(
            "Could not record job %s in Prefect; a retry finds it by its tag", job.job_id()
        )


def recorded_job_id() -> str | None:
    """The job id an earlier attempt of this task run recorded in Prefect, if any."""
    made = pu.earlier_attempt_artifacts("markdown")  # how the API stores a link artifact
    if made is None:
        pu.run_logger().warning("Could not read this task run's job record")
        return None
    for artifact in made:
        found = _RECORD.search(artifact.description or "")
        if found:
            return found.group(1)
    return None


def previous_job(service: Any, tag: str | None) -> tuple[Any, bool]:
    """The job an earlier attempt of this task run submitted, and whether Prefect has its record.

    Returns:
        ``(job, recorded)``; ``(None, False)`` on a first attempt or when no job was submitted.
    """
    if tag is None or pu.task_run_count() <= 1:
        return None, False
    job_id = recorded_job_id()
    recorded = job_id is not None
    if job_id is None:
        tagged = service.jobs(job_tags=[tag], limit=1)
        job_id = tagged[0].job_id() if tagged else None
    if job_id is None:
        return None, False
    pu.run_logger().info(
        "Re-attaching to primitive job %s of an earlier attempt (found by its %s)",
        job_id,
        "record" if recorded else "tag",
    )
    return service.job(job_id), recorded


def cancel_strays(service: Any, tag: str | None, keep: str) -> None:
    """Cancel the other pending jobs carrying this task run's tag, keeping ``keep``.

    qiskit-ibm-runtime resends a ``POST /jobs`` answered with one of its retryable 5xx codes; when
    the endpoint (or a proxy in front of it) had already created the job, the resend makes a second
    one, and only the last answer reaches the task. One listing after the submission finds such a
    job; it is cancelled, so the task run never leaves more than one job running.
    """
    if tag is None:
        return
    try:
        strays = [job for job in service.jobs(job_tags=[tag], pending=True, limit=20)]
    except Exception as exc:  # the listing is a safeguard; the job itself was submitted fine
        pu.run_logger().warning("Could not look for duplicate jobs of tag %s: %s", tag, exc)
        return
    for job in strays:
        if job.job_id() != keep:
            pu.run_logger().warning(
                "Cancelling job %s: a duplicate of %s made by a resent submission",
                job.job_id(),
                keep,
            )
            with contextlib.suppress(Exception):
                job.cancel()


def wait_final(job: Any, timeout: float | None, abort: threading.Event | None) -> str:
    """Poll the job's status until it is final; return it.

    Raises:
        RuntimeJobTimeoutError: ``timeout`` seconds passed.
        RuntimeJobCancelled: ``abort`` was set, or the flow run is being cancelled.
    """
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    next_check = started + _CANCEL_CHECK_SECONDS
    pause = 0.1
    while True:
        status: str = job.status()
        if status in FINAL_STATUSES:
            return status
        now = time.monotonic()
        if abort is not None and abort.is_set():
            raise RuntimeJobCancelled(f"Stopped waiting for job {job.job_id()}: task cancelled.")
        if deadline is not None and now >= deadline:
            raise RuntimeJobTimeoutError(
                f"Job {job.job_id()} did not finish within {timeout} seconds."
            )
        if now >= next_check:
            next_check = now + _CANCEL_CHECK_SECONDS
            if pu.flow_run_cancelling():
                raise RuntimeJobCancelled(
                    f"The flow run was cancelled while job {job.job_id()} was running."
                )
        if deadline is not None:
            pause = min(pause, max(0.0, deadline - now))
        if abort is not None:
            abort.wait(pause)
        else:
            time.sleep(pause)
        pause = min(pause * 1.5, _MAX_POLL)


def final_result(job: Any, status: str) -> Any:
    """The ``PrimitiveResult`` of a job in final state ``status``, or its failure."""
    if status == "DONE":
        return job.result()
    if status == "CANCELLED":
        raise RuntimeJobCancelled(f"Job {job.job_id()} was cancelled.")
    message = job.error_message() or "no reason given"
    if getattr(job, "_reason_code", None) == _RAN_TOO_LONG:
        message = f"ran past its maximum execution time: {message}"
    raise RuntimeJobFailureError(f"Job {job.job_id()} failed: {message}", retryable=False)


def abandon(attached: Attached, why: str) -> None:
    """Cancel the attached job if it is not final, then cancel (close) the task's session."""
    job = attached.job
    if job is None:
        return
    logger = pu.run_logger()
    try:
        if job.status() not in FINAL_STATUSES:
            job.cancel()
            logger.warning("Cancelled primitive job %s: %s", job.job_id(), why)
    except Exception as exc:  # the original failure matters more than this one
        logger.error("Could not cancel primitive job %s (%s): %s", job.job_id(), why, exc)
    end_session(attached, cancel=True)


def end_session(attached: Attached, *, cancel: bool) -> None:
    """Close the session or batch the task opened for its job (``cancel``: its pending jobs too).

    Never raises: a session left open expires at its ``max_time``.
    """
    job = attached.job
    session_id = job.session_id if job is not None else None
    if not (attached.own_session and session_id):
        return
    try:
        if cancel:
            job._api_client.cancel_session(session_id)
        else:
            job._api_client.close_session(session_id)
        attached.own_session = False  # closed once, whoever comes next
    except Exception as exc:
        pu.run_logger().error("Could not close session %s: %s", session_id, exc)


def publish_metrics(job: Any, primitive: str, job_url: str, status: str) -> None:
    """One row of the job's metrics and usage in the :data:`JOB_METRICS_ARTIFACT_KEY` table.

    Once per task run; best effort (a failure is logged).
    """
    if not pu.in_run() or pu.earlier_attempt_made("table", f"`{job.job_id()}`"):
        return
    try:
        metrics = job.metrics()
    except Exception as exc:
        pu.run_logger().warning("No metrics for job %s: %s", job.job_id(), exc)
        return
    timestamps = metrics.get("timestamps") or {}
    usage = metrics.get("usage") or {}
    row: dict[str, Any] = {
        "job_id": job.job_id(),
        "primitive": primitive,
        "status": status,
        "session_id": job.session_id,
        "created": timestamps.get("created"),
        "running": timestamps.get("running"),
        "finished": timestamps.get("finished"),
        "quantum_seconds": _plain(usage.get("quantum_seconds")),
        "usage_seconds": _plain(usage.get("seconds")),
        "attempt": pu.task_run_count(),
        "url": job_url,
    }
    pu.create_table(
        [row], key=JOB_METRICS_ARTIFACT_KEY, description=f"{_about(job, primitive)}, {status}."
    )


def emit_job(job: Any, primitive: str, name: str, payload: dict[str, Any] | None = None) -> None:
    """Emit ``prefect-qiskit-runtime.job.<name>`` about the job."""
    pu.emit(
        f"job.{name}",
        f"{pu.EVENT_PREFIX}.job.{job.job_id()}",
        resource={
            "prefect.resource.name": f"{primitive} job {job.job_id()}",
            "prefect-qiskit-runtime.program-id": primitive,
        },
        payload={"job_id": job.job_id(), **(payload or {})},
    )
