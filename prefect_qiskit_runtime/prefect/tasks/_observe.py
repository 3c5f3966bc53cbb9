"""Observing one job in Prefect: interim results to the log, throttled progress and events, metrics.

Every job a task touches is a Prefect event resource (``prefect-qiskit-runtime.job.<id>``, related
to its program). The task run that submits or awaits a job carries a link artifact to the job's
REST resource on its service (:func:`link_job`); a job a task waits for also gets a progress
artifact and, at its end, one row in the table artifact keyed :data:`JOB_METRICS_ARTIFACT_KEY`.
The link and the table are made once per job and task run, whatever the retries, and are best
effort: a failed artifact call is logged, never raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.prefect import _utils as pu

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeJob

#: Key of the table artifact each finished job leaves (one versioned collection in the UI).
JOB_METRICS_ARTIFACT_KEY = "qiskit-runtime-job-metrics"
#: Inputs that tell how many iterations a program will publish (progress percentage).
_ITERATION_INPUTS = ("iterations", "maxiter", "max_iterations", "max_evaluations", "maxfev")


def _job_resource(job: RuntimeJob) -> tuple[str, dict[str, str], list[dict[str, str]]]:
    job_id = job.job_id()
    resource = {
        "prefect.resource.name": f"{job.program_id} job {job_id}",
        "prefect-qiskit-runtime.program-id": job.program_id,
        "prefect-qiskit-runtime.backend": job.backend() or "",
    }
    related = [
        {
            "prefect.resource.id": f"{pu.EVENT_PREFIX}.program.{job.program_id}",
            "prefect.resource.role": "program",
            "prefect.resource.name": job.program_id,
        }
    ]
    return f"{pu.EVENT_PREFIX}.job.{job_id}", resource, related


def _emit_job(job: RuntimeJob, name: str, payload: dict[str, Any] | None = None) -> None:
    resource_id, resource, related = _job_resource(job)
    pu.emit(
        f"job.{name}",
        resource_id,
        resource=resource,
        related=related,
        payload={"job_id": job.job_id(), **(payload or {})},
    )


def job_url(service_url: str, job_id: str) -> str:
    """The REST URL of a job on its service: ``<service root>/runtime/jobs/<job id>``."""
    return f"{service_url.rstrip('/')}/runtime/jobs/{job_id}"


def _about(job: RuntimeJob) -> str:
    # The job id in backticks: earlier_attempt_made finds an artifact about this job by it.
    return f"Runtime job `{job.job_id()}`: program `{job.program_id}` on `{job.backend()}`"


def link_job(job: RuntimeJob, service_url: str) -> None:
    """Leave a link artifact to ``job`` on the current run, once per task run (not per attempt).

    Args:
        job: The job.
        service_url: The root URL of the job's service.
    """
    # Prefect stores a link artifact as markdown ("[text](link)"): that is the type to look for.
    if not pu.in_run() or pu.earlier_attempt_made("markdown", f"`{job.job_id()}`"):
        return
    pu.create_link(
        job_url(service_url, job.job_id()),
        f"Runtime job {job.job_id()}",
        f"{_about(job)} (its REST resource; the service asks for the user's token).",
    )


def publish_metrics(
    job: RuntimeJob, metrics: Mapping[str, Any], *, service_url: str | None, interim_results: int
) -> None:
    """Add the job's row to the :data:`JOB_METRICS_ARTIFACT_KEY` table, once per task run.

    Args:
        job: The finished job.
        metrics: ``job.metrics()``.
        service_url: The root URL of the job's service, for the row's ``url``; ``None`` leaves it
            out.
        interim_results: How many interim results the task saw.
    """
    if not pu.in_run() or pu.earlier_attempt_made("table", f"`{job.job_id()}`"):
        return
    row = {k: _plain(v) for k, v in metrics.items()}
    row["interim_results"] = interim_results
    row["attempt"] = pu.task_run_count()
    if service_url:
        row["url"] = job_url(service_url, job.job_id())
    pu.create_table(
        [row],
        key=JOB_METRICS_ARTIFACT_KEY,
        description=f"{_about(job)}, {metrics.get('status') or ''}.",
    )


def record_finished_job(job: RuntimeJob, service_url: str) -> None:
    """:func:`publish_metrics` for a job whose result is already in hand; never raises.

    Reading the metrics is one more request; if it fails, the row is skipped rather than the
    result lost.
    """
    try:
        metrics = job.metrics()
    except Exception:
        pu.run_logger().debug("No metrics row for job %s", job.job_id(), exc_info=True)
        return
    publish_metrics(job, metrics, service_url=service_url, interim_results=0)


def _expected_iterations(inputs: Mapping[str, Any]) -> int | None:
    for name in _ITERATION_INPUTS:
        value = inputs.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    for nested in ("optimizer_options", "options"):
        sub = inputs.get(nested)
        if isinstance(sub, Mapping):
            found = _expected_iterations(sub)
            if found:
                return found
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 3)
    return value


class _JobObserver:
    """Shows one job in Prefect while a task waits for it.

    Each interim result becomes one truncated log line. The progress artifact and the
    ``prefect-qiskit-runtime.job.interim-result`` event are throttled to about one per second; the
    end of the job always updates both and adds one table artifact of job metrics.
    """

    def __init__(
        self,
        job: RuntimeJob,
        *,
        artifacts: bool,
        expected_iterations: int | None,
        service_url: str | None = None,
        interval: float = 1.0,
    ) -> None:
        self.job = job
        self.service_url = service_url
        self.artifacts = artifacts and pu.in_run()
        self.expected = expected_iterations
        self.logger = pu.run_logger()
        self.count = 0
        self.last_message: Any = None
        self._throttle = pu.Throttle(interval)
        self._progress_id: Any = None
        self._progress = 0.0

    def start(self) -> None:
        if self.artifacts:
            self._progress_id = pu.create_progress(
                0.0, f"Runtime job `{self.job.job_id()}` ({self.job.program_id})"
            )

    def on_interim(self, job_id: str, message: Any) -> None:
        self.count += 1
        self.last_message = message
        self.logger.info("Job %s interim result %d: %s", job_id, self.count, pu.one_line(message))
        if self.expected and isinstance(message, Mapping):
            iteration = message.get("iteration")
            if isinstance(iteration, int | float):
                self._progress = min(99.0, 100.0 * (float(iteration) + 1) / self.expected)
        if self._throttle.ready():
            _emit_job(
                self.job,
                "interim-result",
                {"count": self.count, "message": pu.jsonable(message)},
            )
            if self._progress_id is not None:
                pu.update_progress(self._progress_id, self._progress)

    def finish(self, metrics: dict[str, Any]) -> None:
        status = str(metrics.get("status") or "")
        if self._progress_id is not None:
            pu.update_progress(
                self._progress_id,
                100.0,
                f"Runtime job `{self.job.job_id()}` ({self.job.program_id}): {status}",
            )
        name = {
            JobState.COMPLETED.value: "completed",
            JobState.CANCELLED.value: "cancelled",
        }.get(status, "failed")
        _emit_job(self.job, name, {k: _plain(v) for k, v in metrics.items()})
        if self.artifacts:
            publish_metrics(
                self.job, metrics, service_url=self.service_url, interim_results=self.count
            )
