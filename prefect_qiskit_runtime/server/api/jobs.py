"""Routes of ``/runtime/jobs``: parse the request, call one use case, shape the answer."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from prefect_qiskit_runtime.server.api.parsing import (
    IdempotencyHeader,
    json_body,
    json_request_body,
)
from prefect_qiskit_runtime.server.api.render import job_json_text, raw_json, result_text
from prefect_qiskit_runtime.server.auth import current_user
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.schemas import IdResponse, JobCreate
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import jobs as job_cases

#: Extension header of ``GET /runtime/jobs/{id}/results``: the job's status when answered.
JOB_STATUS_HEADER = "X-Job-Status"

router = APIRouter()


@router.post(
    "/runtime/jobs",
    tags=["jobs"],
    status_code=201,
    response_model=IdResponse,
    summary="Run a program",
    openapi_extra=json_request_body(JobCreate),
)
def run_job(
    request: Request,
    user: User = Depends(current_user),
    body: JobCreate = Depends(json_body(JobCreate)),
    idempotency_key: str | None = IdempotencyHeader,
) -> Response:
    """Validate the inputs against the program's declared parameters and queue a job."""
    answer = job_cases.run_job(runtime_of(request), user, body, idempotency_key)
    return JSONResponse(answer.body, status_code=answer.status_code)


@router.get("/runtime/jobs", tags=["jobs"], summary="List the caller's jobs (newest first)")
def list_jobs(
    request: Request,
    limit: int = Query(10, ge=0, le=10**9),
    offset: int = Query(0, ge=0, le=10**9),
    pending: bool | None = Query(None, description="true: QUEUED/RUNNING; false: final"),
    program: str | None = Query(None, max_length=100, description="Only this program's jobs"),
    user: User = Depends(current_user),
) -> Response:
    """``count`` is ``max(total, offset)`` so that the old client's paging loop ends."""
    jobs, count = job_cases.list_jobs(runtime_of(request), user, limit, offset, pending, program)
    items = ", ".join(job_json_text(job) for job in jobs)
    return raw_json(f'{{"jobs": [{items}], "count": {count}}}')


@router.get("/runtime/jobs/{job_id}", tags=["jobs"], summary="Get a job (optionally long-poll)")
async def get_job(
    request: Request,
    job_id: str,
    wait: float | None = Query(
        None, ge=0, allow_inf_nan=False, description="Wait up to this many seconds (<= 60)."
    ),
    user: User = Depends(current_user),
) -> Response:
    """With ``wait``, answer as soon as the job is final, or after ``wait`` seconds."""
    job = await job_cases.wait_for_job(runtime_of(request), job_id, user, wait, light=True)
    return raw_json(job_json_text(job))


@router.delete("/runtime/jobs/{job_id}", tags=["jobs"], status_code=204, summary="Delete a job")
def delete_job(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
    """Delete a job in any state; a running job is stopped first."""
    job_cases.delete_job(runtime_of(request), user, job_id)
    return Response(status_code=204)


@router.post(
    "/runtime/jobs/{job_id}/cancel", tags=["jobs"], status_code=204, summary="Cancel a job"
)
def cancel_job(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
    """QUEUED or RUNNING → CANCELLED at once (a running program is killed); final → 409."""
    job_cases.cancel_job(runtime_of(request), user, job_id)
    return Response(status_code=204)


@router.get(
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
    job = await job_cases.wait_for_job(runtime_of(request), job_id, user, wait, light=False)
    headers = {JOB_STATUS_HEADER: job.status}
    text = result_text(job)
    if text is None:
        return Response(status_code=204, headers=headers)
    return PlainTextResponse(text, headers=headers)


@router.get(
    "/runtime/jobs/{job_id}/logs",
    tags=["jobs"],
    summary="The job's captured stdout, stderr and logging",
    response_class=PlainTextResponse,
)
def job_logs(request: Request, job_id: str, user: User = Depends(current_user)) -> Response:
    """Empty until the job ended."""
    return PlainTextResponse(job_cases.job_logs(runtime_of(request), user, job_id))


__all__ = ["JOB_STATUS_HEADER", "router"]
