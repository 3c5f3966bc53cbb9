"""Tasks on existing jobs: cancel, delete, read their metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect import task

from prefect_qiskit_runtime.core.exceptions import RuntimeInvalidStateError, RuntimeJobNotFound
from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.tasks._common import _COMMON, CredentialsLike, _service
from prefect_qiskit_runtime.prefect.tasks._observe import _emit_job, _plain


def _cancel_job(credentials: CredentialsLike, job_id: str) -> str:
    job = _service(credentials).job(job_id)
    if job.state is not None and job.state.is_final:
        pu.run_logger().info("Runtime job %s already ended: %s", job_id, job.state.value)
        return job.state.value
    try:
        job.cancel()
    except RuntimeInvalidStateError:
        job.refresh()  # it ended between the two calls
    state = job.state.value if job.state else "UNKNOWN"
    pu.run_logger().info("Runtime job %s: %s", job_id, state)
    _emit_job(job, "cancelled" if state == JobState.CANCELLED.value else "cancel-skipped")
    return state


def _delete_job(credentials: CredentialsLike, job_id: str, missing_ok: bool) -> None:
    try:
        _service(credentials).delete_job(job_id)
    except RuntimeJobNotFound:
        if not missing_ok:
            raise
    pu.run_logger().info("Deleted runtime job %s", job_id)


def _get_job(credentials: CredentialsLike, job_id: str) -> dict[str, Any]:
    job = _service(credentials).job(job_id)
    info = {k: _plain(v) for k, v in job.metrics().items()}
    if job.state in (JobState.FAILED, JobState.CANCELLED_RAN_TOO_LONG):
        info["error_message"] = job.error_message()
    return info


@task(name="cancel-runtime-job", task_run_name="cancel-{job_id}", **_COMMON)
def cancel_job(credentials: CredentialsLike, job_id: str) -> str:
    """Cancel a job; a job that already ended is left as it is.

    Args:
        credentials: The service holding the job.
        job_id: The job to cancel.

    Returns:
        The job's status afterwards (``"CANCELLED"``, or the final status it already had).

    Raises:
        RuntimeJobNotFound: No such job.
    """
    return _cancel_job(credentials, job_id)


@task(name="cancel-runtime-job", task_run_name="cancel-{job_id}", **_COMMON)
async def acancel_job(credentials: CredentialsLike, job_id: str) -> str:
    """Async twin of :func:`cancel_job`."""
    return await asyncio.to_thread(_cancel_job, credentials, job_id)


@task(name="delete-runtime-job", task_run_name="delete-job-{job_id}", **_COMMON)
def delete_job(credentials: CredentialsLike, job_id: str, *, missing_ok: bool = False) -> None:
    """Delete a job and everything stored with it (a running job is stopped first).

    Args:
        credentials: The service holding the job.
        job_id: The job to delete.
        missing_ok: Succeed when the job does not exist (already deleted).

    Raises:
        RuntimeJobNotFound: No such job and ``missing_ok`` is false.
    """
    _delete_job(credentials, job_id, missing_ok)


@task(name="delete-runtime-job", task_run_name="delete-job-{job_id}", **_COMMON)
async def adelete_job(
    credentials: CredentialsLike, job_id: str, *, missing_ok: bool = False
) -> None:
    """Async twin of :func:`delete_job`."""
    await asyncio.to_thread(_delete_job, credentials, job_id, missing_ok)


@task(name="get-runtime-job", task_run_name="get-job-{job_id}", **_COMMON)
def get_job(credentials: CredentialsLike, job_id: str) -> dict[str, Any]:
    """Read a job's status, timestamps and durations.

    Args:
        credentials: The service holding the job.
        job_id: The job.

    Returns:
        ``job_id``, ``program_id``, ``backend``, ``status``, ``created``/``started``/``finished``
        (ISO-8601), ``queue_seconds``, ``run_seconds``, ``message_count``, ``reason_code``, and
        ``error_message`` for a failed job.

    Raises:
        RuntimeJobNotFound: No such job.
    """
    return _get_job(credentials, job_id)


@task(name="get-runtime-job", task_run_name="get-job-{job_id}", **_COMMON)
async def aget_job(credentials: CredentialsLike, job_id: str) -> dict[str, Any]:
    """Async twin of :func:`get_job`."""
    return await asyncio.to_thread(_get_job, credentials, job_id)
