"""Job use cases: run a program, list, read (optionally waiting for the end), cancel and delete.

:func:`run_job` is the whole submission: idempotency key, program lookup, account, log level,
backend and input checks, then the job's creation, claimed at once when this instance has a free
slot. Stopping a job tells the scheduler (to kill a running program) and the broker (to wake the
streams and long-polls that follow it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.server.auth import store_read
from prefect_qiskit_runtime.server.broker import JobEvent, Subscription
from prefect_qiskit_runtime.server.schemas import JobCreate
from prefect_qiskit_runtime.server.store import Answer, ClaimedJob, Job, User
from prefect_qiskit_runtime.server.usecases.errors import InvalidState, JobNotFound, ProgramNotFound
from prefect_qiskit_runtime.server.usecases.programs import MAX_PAGE
from prefect_qiskit_runtime.server.usecases.validation import (
    check_account,
    check_backend,
    check_idempotency_key,
    check_log_level,
    normalise_params,
    validate_inputs,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from prefect_qiskit_runtime.server.runtime import Runtime

#: How often waiters re-read the store in case the event came from another service instance.
RECHECK_SECONDS = 2.0


def run_job(
    runtime: Runtime,
    user: User,
    body: JobCreate,
    idempotency_key: str | None,
    *,
    params: dict[str, Any] | None = None,
    on_insert: Callable[[Connection, str], None] | None = None,
) -> Answer:
    """Check a submission and create its job, once per idempotency key.

    With a slot free, the job is created already claimed and handed straight to the executor: no
    trip through the queue and the dispatcher.

    Args:
        runtime: The service instance.
        user: The caller.
        body: The submission.
        idempotency_key: The ``Idempotency-Key`` header, or ``None``.
        params: The inputs, already normalised (the modern API builds them); ``None`` takes
            ``body.params``.
        on_insert: Called inside the job's creation transaction (see ``Store.create_job``).

    Returns:
        201 ``{"id", "backend"}``, or the answer first given for the same key.

    Raises:
        InvalidArgument: For a bad key, log level, backend or inputs.
        ProgramNotFound: If the caller can see no such program.
        PermissionDenied: For a hub/group/project other than the account's.
    """
    store = runtime.store
    key = check_idempotency_key(idempotency_key)
    if key:
        stored = store.stored_answer(user.id, key)
        if stored is not None:
            return stored
    program = store.runnable_program(body.program_id, user.id)
    if program is None:
        raise ProgramNotFound(body.program_id)
    hub, group, project = check_account(body.hub, body.group, body.project)
    log_level = check_log_level(body.log_level)
    spec = program.spec_dict
    check_backend(body.backend, spec)
    if params is None:
        params = normalise_params(body.params)
    validate_inputs(params, spec)
    scheduler = runtime.scheduler
    reserved = scheduler is not None and scheduler.reserve_slot()
    claimed: ClaimedJob | None = None
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
            on_insert=on_insert,
        )
    finally:
        # A reserved slot is always given back or filled, even when the creation failed.
        if scheduler is not None and reserved:
            scheduler.take_reserved(claimed)
    if not answer.replayed:
        runtime.metrics.jobs_submitted.inc()
        if scheduler is not None and claimed is None:
            scheduler.kick()
    return answer


def list_jobs(
    runtime: Runtime,
    user: User,
    limit: int,
    offset: int,
    pending: bool | None,
    program_id: str | None,
) -> tuple[list[Job], int]:
    """The caller's jobs, newest first.

    Args:
        runtime: The service instance.
        user: The caller.
        limit: Page size asked for (at most :data:`MAX_PAGE` are returned).
        offset: Jobs to skip.
        pending: ``True``: only QUEUED/RUNNING; ``False``: only final; ``None``: all.
        program_id: Only this program's jobs, or ``None``.

    Returns:
        The page and ``count``: ``max(total, offset)``, so that the old client's paging loop ends.
    """
    jobs, total = runtime.store.list_jobs(
        user.id, min(limit, MAX_PAGE), offset, pending, program_id
    )
    return jobs, max(total, offset)


async def wait_for_job(
    runtime: Runtime, job_id: str, user: User, wait: float | None, *, light: bool
) -> Job:
    """The caller's job, once final or after ``wait`` seconds (at most the service's limit).

    Args:
        runtime: The service instance.
        job_id: The job.
        user: The caller.
        wait: Seconds to wait for the job to end; ``None`` or 0 answers at once.
        light: Leave out the result, error and logs.

    Returns:
        The job as last read.

    Raises:
        JobNotFound: If the caller has no such job (or it was deleted while waiting).
    """
    if not wait:
        return await _read_job(runtime, job_id, user, light=light)
    deadline = time.monotonic() + min(wait, runtime.config.max_wait_seconds)
    with runtime.broker.subscribe(job_id) as sub:
        while True:
            job = await _read_job(runtime, job_id, user, light=light)
            remaining = deadline - time.monotonic()
            if job.is_final or remaining <= 0:
                return job
            event = await next_final_event(sub, min(remaining, RECHECK_SECONDS))
            if event is not None and isinstance(event.job, Job) and event.job.is_final:
                # The scheduler published the job as it stored it: no need to read it again.
                return event.job


async def _read_job(runtime: Runtime, job_id: str, user: User, *, light: bool) -> Job:
    store = runtime.store
    job = await store_read(store, store.get_job, job_id, user.id, light=light)
    if job is None:
        raise JobNotFound(job_id)
    return job


async def next_final_event(sub: Subscription, timeout: float) -> JobEvent | None:
    """Wait until a ``final`` event arrives on ``sub`` or ``timeout`` passes.

    Args:
        sub: A subscription to one job's events.
        timeout: Seconds to wait at most.

    Returns:
        The ``final`` event, or ``None`` after ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        event = await sub.get(remaining)
        if event is None or event.kind == "final":
            return event


def job_logs(runtime: Runtime, user: User, job_id: str) -> str:
    """The job's captured stdout, stderr and logging (empty until the job ended).

    Args:
        runtime: The service instance.
        user: The caller.
        job_id: The job.

    Returns:
        The log text.

    Raises:
        JobNotFound: If the caller has no such job.
    """
    job = runtime.store.get_job(job_id, user.id)
    if job is None:
        raise JobNotFound(job_id)
    return job.logs or ""


def delete_job(runtime: Runtime, user: User, job_id: str) -> None:
    """Delete a job in any state; a running job is stopped first.

    Args:
        runtime: The service instance.
        user: The caller.
        job_id: The job.

    Raises:
        JobNotFound: If the caller has no such job.
    """
    job = runtime.store.delete_job(job_id, user.id)
    if job is None:
        raise JobNotFound(job_id)
    if runtime.scheduler is not None and job.status == JobState.RUNNING.value:
        runtime.scheduler.kill_threadsafe(job_id)
    runtime.broker.publish_final(job_id, "DELETED")


def cancel_job(runtime: Runtime, user: User, job_id: str) -> None:
    """QUEUED or RUNNING → CANCELLED at once; a running program is killed.

    Args:
        runtime: The service instance.
        user: The caller.
        job_id: The job.

    Raises:
        JobNotFound: If the caller has no such job.
        InvalidState: If the job is already final.
    """
    job, changed = runtime.store.cancel_job(job_id, user.id)
    if job is None:
        raise JobNotFound(job_id)
    if not changed:
        raise InvalidState(f"Job {job_id} cannot be cancelled: it is {job.status}.")
    runtime.metrics.jobs_finished.labels(JobState.CANCELLED.value).inc()
    if runtime.scheduler is not None:
        runtime.scheduler.kill_threadsafe(job_id)
    runtime.broker.publish_final(job_id, JobState.CANCELLED.value)


__all__ = [
    "RECHECK_SECONDS",
    "cancel_job",
    "delete_job",
    "job_logs",
    "list_jobs",
    "next_final_event",
    "run_job",
    "wait_for_job",
]
