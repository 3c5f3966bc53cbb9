"""Routes of ``/api/v1/jobs``: primitive jobs of ``qiskit-ibm-runtime``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from prefect_qiskit_runtime.server.api.jobs import JOB_STATUS_HEADER
from prefect_qiskit_runtime.server.api.parsing import json_body, json_request_body
from prefect_qiskit_runtime.server.api.render import raw_json, result_text
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.schemas import MAX_TAGS, ModernJobCreate, TagsUpdate
from prefect_qiskit_runtime.server.store import JobFilter, User
from prefect_qiskit_runtime.server.usecases import jobs as job_cases
from prefect_qiskit_runtime.server.usecases import modern_jobs

from .auth import modern_user
from .backends import API
from .render import job_json_text, jobs_json_text

router = APIRouter(tags=["modern: jobs"])
JobId = Path(max_length=64, description="The job's id.")
_BIG = 10**9


@router.post(
    f"{API}/jobs",
    status_code=201,
    summary="Run a primitive (sampler or estimator, params version 2)",
    openapi_extra=json_request_body(ModernJobCreate),
)
def run_primitive(
    request: Request,
    user: User = Depends(modern_user),
    body: ModernJobCreate = Depends(json_body(ModernJobCreate)),
) -> Response:
    """Creates a job of the built-in ``sampler`` or ``estimator`` program; with ``session_id``,
    inside that session or batch."""
    created = modern_jobs.submit(runtime_of(request), user, body)
    return JSONResponse(created, status_code=201)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


@router.get(f"{API}/jobs", summary="The caller's jobs (newest first unless sort=ASC)")
def list_jobs(
    request: Request,
    limit: int = Query(10, ge=0, le=_BIG),
    offset: int = Query(0, ge=0, le=_BIG),
    pending: bool | None = Query(None, description="true: QUEUED/RUNNING; false: final"),
    program: str | None = Query(None, max_length=100),
    backend: str | None = Query(None, max_length=200),
    session_id: str | None = Query(None, max_length=64),
    tags: list[str] = Query([], max_length=MAX_TAGS, description="Jobs carrying all of these"),
    created_after: datetime | None = Query(None),
    created_before: datetime | None = Query(None),
    sort: Literal["ASC", "DESC"] = Query("DESC"),
    exclude_params: bool = Query(True, description="Lists never carry the inputs"),
    user: User = Depends(modern_user),
) -> Response:
    """``{"jobs": [...], "count": n}``; ``count`` is ``max(matching, offset)``."""
    where = JobFilter(
        pending=pending,
        program_id=program,
        backend=backend,
        session_id=session_id,
        tags=tuple(tags),
        created_after=_utc(created_after),
        created_before=_utc(created_before),
    )
    jobs, extras, count = modern_jobs.list_jobs(
        runtime_of(request), user, where, limit, offset, ascending=sort == "ASC"
    )
    return raw_json(jobs_json_text(jobs, extras, count))


@router.get(f"{API}/jobs/{{job_id}}", summary="A job: its state, session, tags and inputs")
async def get_job(
    request: Request,
    job_id: str = JobId,
    exclude_params: bool = Query(False),
    user: User = Depends(modern_user),
) -> Response:
    """``state.status`` is ``Queued``, ``Running``, ``Completed``, ``Failed`` or ``Cancelled``.

    A pending job less than ``status_grace`` (0.5 s) old is answered when it ends, or when it is
    that old: the client's first status poll then sees a short job final.
    """
    job, extras = await modern_jobs.read_job(runtime_of(request), user, job_id, grace=True)
    return raw_json(job_json_text(job, extras, with_params=not exclude_params))


@router.delete(f"{API}/jobs/{{job_id}}", status_code=204, summary="Delete a job")
def delete_job(
    request: Request, job_id: str = JobId, user: User = Depends(modern_user)
) -> Response:
    """In any state; a running job is stopped first."""
    job_cases.delete_job(runtime_of(request), user, job_id)
    return Response(status_code=204)


@router.post(f"{API}/jobs/{{job_id}}/cancel", status_code=204, summary="Cancel a job")
def cancel_job(
    request: Request, job_id: str = JobId, user: User = Depends(modern_user)
) -> Response:
    """QUEUED or RUNNING → CANCELLED at once (the program is killed); a final job → 409."""
    job_cases.cancel_job(runtime_of(request), user, job_id)
    return Response(status_code=204)


@router.get(
    f"{API}/jobs/{{job_id}}/results",
    summary="The result (RuntimeEncoder JSON of a PrimitiveResult), or the error of a failed job",
    response_class=PlainTextResponse,
)
async def job_results(
    request: Request, job_id: str = JobId, user: User = Depends(modern_user)
) -> Response:
    """204 while the job is QUEUED or RUNNING; ``X-Job-Status`` names its status."""
    job = await job_cases.wait_for_job(runtime_of(request), job_id, user, None, light=False)
    text = result_text(job)
    headers = {JOB_STATUS_HEADER: job.status}
    if text is None:
        return Response(status_code=204, headers=headers)
    return PlainTextResponse(text, headers=headers)


@router.get(
    f"{API}/jobs/{{job_id}}/logs",
    summary="The job's captured output",
    response_class=PlainTextResponse,
)
def job_logs(request: Request, job_id: str = JobId, user: User = Depends(modern_user)) -> Response:
    """Empty until the job ended."""
    return PlainTextResponse(job_cases.job_logs(runtime_of(request), user, job_id))


@router.get(f"{API}/jobs/{{job_id}}/metrics", summary="The job's timestamps and usage")
async def job_metrics(
    request: Request, job_id: str = JobId, user: User = Depends(modern_user)
) -> dict[str, Any]:
    """Usage is the time the job ran (``status`` ``completed`` once it is final)."""
    job, _ = await modern_jobs.read_job(runtime_of(request), user, job_id)
    return modern_jobs.metrics(job)


@router.put(
    f"{API}/jobs/{{job_id}}/tags",
    status_code=204,
    summary="Replace a job's tags",
    openapi_extra=json_request_body(TagsUpdate),
)
def replace_tags(
    request: Request,
    job_id: str = JobId,
    body: TagsUpdate = Depends(json_body(TagsUpdate)),
    user: User = Depends(modern_user),
) -> Response:
    """``{"tags": [...]}``."""
    modern_jobs.replace_tags(runtime_of(request), user, job_id, body.tags)
    return Response(status_code=204)


__all__ = ["router"]
