"""Writing answers: the program and job objects of ``spec/runtime-api.md`` and raw JSON text."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.store import Job, Program, User, isoformat


def program_json(program: Program, user: User, *, with_data: bool = True) -> dict[str, Any]:
    """The program object of ``spec/runtime-api.md`` §3.1 (``data`` only for its author).

    Args:
        program: The program.
        user: The caller.
        with_data: Include the source (for its author only).

    Returns:
        The JSON object.
    """
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
    """The job object of ``spec/runtime-api.md`` §3.3 plus the extras of ``docs/internals.md``.

    ``params`` is spliced in as stored, never decoded: inputs may be large.

    Args:
        job: The job.

    Returns:
        The JSON text.
    """
    retryable = bool(job.reason_code) and is_retryable(job.reason_code)
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


def is_retryable(reason: str | None) -> bool:
    """Whether a job that ended for ``reason`` (a ``ReasonCode`` value) may be submitted again."""
    try:
        return ReasonCode(reason).retryable if reason else False
    except ValueError:
        return False


def result_text(job: Job) -> str | None:
    """What ``GET /runtime/jobs/{id}/results`` answers for a job.

    Args:
        job: The job, read with its result and error.

    Returns:
        ``None`` while it is not final; the RuntimeEncoder JSON of the result when COMPLETED;
        empty when CANCELLED; the error text otherwise (FAILED, RAN TOO LONG).
    """
    state = job.state
    if not state.is_final:
        return None
    if state is JobState.COMPLETED:
        return job.result or "null"
    if state is JobState.CANCELLED:
        return ""
    return job.error or ""


def raw_json(text: str, status_code: int = 200) -> Response:
    """An answer whose body is JSON text already.

    Args:
        text: The JSON text.
        status_code: HTTP status.

    Returns:
        The response.
    """
    return Response(text, status_code=status_code, media_type="application/json")


__all__ = ["is_retryable", "job_json_text", "program_json", "raw_json", "result_text"]
