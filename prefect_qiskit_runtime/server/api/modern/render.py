"""Writing the modern API's job objects (``qiskit-ibm-runtime``'s ``job_get`` and ``jobs_get``)."""

from __future__ import annotations

import json
from typing import Any

from prefect_qiskit_runtime.server.api.render import is_retryable
from prefect_qiskit_runtime.server.store import Job, JobExtras, isoformat
from prefect_qiskit_runtime.server.usecases.modern_jobs import state


def job_json_text(job: Job, extras: JobExtras, *, with_params: bool) -> str:
    """The job object: ``id``, ``backend``, ``state``, ``status``, ``program``, ``created``,
    ``session_id``, ``tags`` and, unless ``exclude_params`` was asked, ``params`` as stored.

    ``params`` is spliced in as stored, never decoded: inputs may be large. Beyond what the
    client reads, it carries the service's extras (``started``, ``ended``, ``reason_code`` of
    :class:`~prefect_qiskit_runtime.core.models.ReasonCode` as ``reason_code_name``,
    ``retryable``).

    Args:
        job: The job.
        extras: Its session, privacy and tags.
        with_params: Include the inputs.

    Returns:
        The JSON text.
    """
    job_state = state(job)
    body: dict[str, Any] = {
        "id": job.id,
        "backend": job.backend,
        "state": job_state,
        "status": job_state["status"],
        "program": {"id": job.program_id},
        "created": isoformat(job.created),
        "started": isoformat(job.started),
        "ended": isoformat(job.ended),
        "runtime": job.runtime or "",
        "cost": job.cost,
        "log_level": job.log_level,
        "session_id": extras.session_id,
        "tags": list(extras.tags),
        "private": extras.private,
        "user_id": job.owner_id,
        "estimated_running_time_seconds": None,
        "reason_code_name": job.reason_code,
        "retryable": bool(job.reason_code) and is_retryable(job.reason_code),
    }
    text = json.dumps(body)
    if not with_params:
        return text
    return '{"params": ' + (job.params or "{}") + ", " + text[1:]


def jobs_json_text(jobs: list[Job], extras: dict[str, JobExtras], count: int) -> str:
    """``{"jobs": [...], "count": n}`` of job objects without their inputs."""
    items = ", ".join(
        job_json_text(job, extras.get(job.id, JobExtras()), with_params=False) for job in jobs
    )
    return f'{{"jobs": [{items}], "count": {count}}}'


__all__ = ["job_json_text", "jobs_json_text"]
