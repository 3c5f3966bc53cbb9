"""Prefect tasks for the runtime-program lifecycle: upload, run, await, cancel, delete, inspect.

Every task has a synchronous form (``run_program``) and an asynchronous twin with an ``a`` prefix
(``arun_program``) for async flows; both share one implementation, which calls the blocking client
on a worker thread in the async case.

Retries happen in two layers (see the *Retries* page of the docs):

- The client's transport retries connection errors, timeouts, 408/429 and 502/503/504 on its own.
  Requests that create something carry an ``Idempotency-Key``, so those retries are safe.
- A Prefect task retry happens only when the failure is marked retryable (a lost worker, a restarted
  service, a service unreachable through every transport retry): ``retry_condition_fn`` checks it.
  A program's own exception fails the task at once, with the program's traceback in the message.

The idempotency key of ``run_program``, ``run_and_await`` and ``upload_program`` derives from the
task run (its id plus a fixed suffix, never the attempt number). A retry therefore finds the job the
first attempt made instead of making a second one. ``run_and_await`` resubmits only after that job
has definitely ended with a retryable failure, under a key derived from the failed job.

No orphans: when a task that waits for a job times out, is cancelled, or sees its flow run
cancelled, it cancels the job before it fails.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_qiskit_runtime.core.exceptions import (
    QiskitRuntimeError,
    RuntimeDuplicateProgramError,
    RuntimeInvalidStateError,
    RuntimeJobCancelled,
    RuntimeJobFailureError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    RuntimeProgramNotFound,
)
from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend, QiskitRuntimeCredentials

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeJob, RuntimeService

__all__ = [
    "JOB_METRICS_ARTIFACT_KEY",
    "aawait_result",
    "acancel_job",
    "adelete_job",
    "adelete_program",
    "aget_job",
    "alist_programs",
    "arun_and_await",
    "arun_program",
    "aupload_program",
    "await_result",
    "cancel_job",
    "delete_job",
    "delete_program",
    "get_job",
    "list_programs",
    "run_and_await",
    "run_program",
    "submit_job",
    "upload_program",
]

#: Key of the table artifact each finished job leaves (one versioned collection in the UI).
JOB_METRICS_ARTIFACT_KEY = "qiskit-runtime-job-metrics"
#: Longest single long-poll while waiting; it bounds how late a timeout or cancellation is noticed.
_WAIT_WINDOW = 2.0
#: How often a waiting task asks the Prefect API whether its flow run is being cancelled.
_CANCEL_CHECK_SECONDS = 5.0
#: Inputs that tell how many iterations a program will publish (progress percentage).
_ITERATION_INPUTS = ("iterations", "maxiter", "max_iterations", "max_evaluations", "maxfev")

# Options shared by every task: no caching and no result persistence (a job submit is not idempotent
# from Prefect's point of view, and results may be large), retries only for retryable failures.
_COMMON: dict[str, Any] = {
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "retries": 2,
    "retry_delay_seconds": [2, 10],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": pu.is_retryable_failure,
}

CredentialsLike = QiskitRuntimeCredentials | QiskitRuntimeBackend


def _service(block: CredentialsLike) -> RuntimeService:
    return block.get_client()


def _attempts(block: CredentialsLike) -> int:
    return block.job_attempts if isinstance(block, QiskitRuntimeBackend) else 3


# ------------------------------------------------------------------------------------------------
# Observing one job: interim results to the log, throttled progress and events, a metrics table.
# ------------------------------------------------------------------------------------------------


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
        interval: float = 1.0,
    ) -> None:
        self.job = job
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
            row = {k: _plain(v) for k, v in metrics.items()}
            row["interim_results"] = self.count
            pu.create_table(
                [row],
                key=JOB_METRICS_ARTIFACT_KEY,
                description=(
                    f"Runtime job `{self.job.job_id()}`: program `{self.job.program_id}` on "
                    f"`{self.job.backend()}`, {status}."
                ),
            )


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 3)
    return value


def _cancel_quietly(job: RuntimeJob, why: str) -> None:
    """Cancel a job the task is abandoning; a job that already ended is left alone."""
    logger = pu.run_logger()
    try:
        if job.state is not None and job.state.is_final:
            return
        job.cancel()
        logger.warning("Cancelled runtime job %s: %s", job.job_id(), why)
    except RuntimeInvalidStateError:
        pass  # it ended meanwhile
    except Exception as exc:  # the original failure matters more than this one
        logger.error("Could not cancel runtime job %s (%s): %s", job.job_id(), why, exc)


def _wait_final(
    job: RuntimeJob,
    timeout: float | None,
    abort: threading.Event | None,
) -> None:
    """Wait for the final state in short long-polls, so timeouts and cancellations land fast.

    A backend block's ``max_execution_time`` is not watched here: it travels with the job as a run
    option and the service ends the job ``CANCELLED - RAN TOO LONG``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    next_check = time.monotonic() + _CANCEL_CHECK_SECONDS
    while True:
        window = _WAIT_WINDOW
        if deadline is not None:
            window = min(window, max(0.0, deadline - time.monotonic()))
        job.refresh(wait=window)
        if job.state is not None and job.state.is_final:
            break
        if abort is not None and abort.is_set():
            raise RuntimeJobCancelled(f"Stopped waiting for job {job.job_id()}: task cancelled.")
        if deadline is not None and time.monotonic() >= deadline:
            raise RuntimeJobTimeoutError(
                f"Job {job.job_id()} did not finish within {timeout} seconds."
            )
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + _CANCEL_CHECK_SECONDS
            if pu.flow_run_cancelling():
                raise RuntimeJobCancelled(
                    f"The flow run was cancelled while job {job.job_id()} was running."
                )
    job.wait_for_final_state()  # returns at once; lets the stream deliver its last messages


def _await(
    job: RuntimeJob,
    *,
    timeout: float | None,
    stream: bool,
    decoder: Any,
    artifacts: bool,
    abort: threading.Event | None = None,
) -> Any:
    """Wait for ``job`` while showing it in Prefect, then return its decoded result.

    Raises:
        RuntimeJobFailureError: The program raised (traceback in the message) or ran too long.
        RuntimeJobCancelled: The job was cancelled.
        RuntimeJobTimeoutError: ``timeout`` passed (the job is cancelled).
    """
    observer = _JobObserver(
        job, artifacts=artifacts, expected_iterations=_expected_iterations(job.inputs)
    )
    observer.start()
    logger = observer.logger
    logger.info("Waiting for runtime job %s (program %s)", job.job_id(), job.program_id)
    if stream:
        if job.state is not None and job.state.is_final:
            # Ended before we looked: the service keeps every interim result, show them now.
            for message in job.interim_results(decoder):
                observer.on_interim(job.job_id(), message)
        else:
            job.stream_results(pu.bind_context(observer.on_interim), decoder)
    try:
        _wait_final(job, timeout, abort)
    except BaseException as exc:
        # A timeout, a cancellation (flow run, task runner, Ctrl-C) or a lost service: no orphans.
        _cancel_quietly(job, type(exc).__name__)
        raise
    finally:
        job.cancel_result_streaming()
    metrics = job.metrics()
    observer.finish(metrics)
    logger.info(
        "Runtime job %s %s (queued %ss, ran %ss)",
        job.job_id(),
        metrics.get("status"),
        _plain(metrics.get("queue_seconds")),
        _plain(metrics.get("run_seconds")),
    )
    return job.result(decoder=decoder)


# ------------------------------------------------------------------------------------------------
# Implementations shared by the sync and async tasks.
# ------------------------------------------------------------------------------------------------


def _upload_program(
    credentials: CredentialsLike,
    data: str | Path,
    metadata: dict[str, Any] | str | None,
    name: str | None,
    description: str | None,
    max_execution_time: int | None,
    is_public: bool,
    exist_ok: bool,
    extra: Mapping[str, Any],
) -> str:
    service = _service(credentials)
    logger = pu.run_logger()
    source = str(data) if isinstance(data, Path) else data
    kwargs: dict[str, Any] = {
        "name": name,
        "description": description,
        "max_execution_time": max_execution_time,
        "is_public": is_public,
        **extra,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        program_id = service.upload_program(
            source, metadata, idempotency_key=pu.task_run_key("upload"), **kwargs
        )
    except RuntimeDuplicateProgramError:
        if not exist_ok:
            raise
        program_id = _replace_program(service, source, metadata, kwargs)
        logger.info("Updated existing runtime program %s", program_id)
        return program_id
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, _attempts(credentials))
        raise
    logger.info("Uploaded runtime program %s", program_id)
    return str(program_id)


def _replace_program(
    service: RuntimeService,
    source: str,
    metadata: dict[str, Any] | str | None,
    kwargs: dict[str, Any],
) -> str:
    """Update the caller's program of the same name with new source and metadata."""
    meta: dict[str, Any] = {}
    if isinstance(metadata, str):
        import json

        meta = json.loads(Path(metadata).read_text())
    elif metadata:
        meta = dict(metadata)
    name = kwargs.get("name") or meta.get("name")
    for program in service.programs(refresh=True, limit=None):
        if program.name == name:
            update = {k: kwargs[k] for k in ("description", "max_execution_time") if k in kwargs}
            service.update_program(program.program_id, data=source, metadata=meta, **update)
            return str(program.program_id)
    raise RuntimeProgramNotFound(f"A program named {name!r} exists but is not yours to update.")


def submit_job(
    service: RuntimeService,
    program_id: str,
    options: Mapping[str, Any],
    inputs: Mapping[str, Any],
    *,
    key: str,
    replace_failed: bool,
    max_replacements: int = 5,
) -> RuntimeJob:
    """Submit a job under idempotency key ``key``; the same key again returns the same job.

    With ``replace_failed``, a job that already ended with a retryable failure (its worker was lost,
    the service restarted) is followed by a new job keyed on the failed job's id. Whatever the
    number of task attempts, each failed job is replaced exactly once, and a job that is queued,
    running or done is never duplicated.

    Args:
        service: The client.
        program_id: The program.
        options: Run options (``backend_name``...).
        inputs: Program inputs.
        key: The idempotency key of the first submission.
        replace_failed: Check the job and replace it if it failed retryably (on a retry attempt).
        max_replacements: Longest chain of replacements followed.

    Returns:
        The job to wait for.
    """
    job = service.run(program_id, options, inputs, idempotency_key=key)
    for _ in range(max_replacements):
        if not replace_failed:
            break
        job.refresh()
        if not (job.state is not None and job.state.is_final and job.retryable):
            break
        pu.run_logger().warning(
            "Runtime job %s ended with a retryable failure (%s); submitting a replacement",
            job.job_id(),
            job.reason_code.value if job.reason_code else job.state.value,
        )
        job = service.run(
            program_id, options, inputs, idempotency_key=f"{key}-after-{job.job_id()}"
        )
    return job


def _submit(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
    *,
    resubmit_failed: bool,
) -> RuntimeJob:
    """Submit once per task run (see :func:`submit_job`) and announce the job."""
    run_options = backend.run_options(dict(options or {}))
    job = submit_job(
        _service(backend),
        program_id,
        run_options,
        backend.merge_inputs(dict(inputs or {})),
        key=pu.task_run_key("run"),
        replace_failed=resubmit_failed and pu.task_run_count() > 1,
    )
    pu.run_logger().info(
        "Runtime job %s: program %s on %s", job.job_id(), program_id, run_options["backend_name"]
    )
    _emit_job(job, "submitted", {"program_id": program_id, "backend": job.backend()})
    return job


def _run_program(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
) -> str:
    try:
        return _submit(backend, program_id, inputs, options, resubmit_failed=False).job_id()
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, backend.job_attempts)
        raise


def _await_result(
    credentials: CredentialsLike,
    job_id: str,
    timeout: float | None,
    stream: bool,
    decoder: Any,
    artifacts: bool,
    abort: threading.Event | None = None,
) -> Any:
    job = _service(credentials).job(job_id)
    try:
        return _await(
            job,
            timeout=timeout,
            stream=stream,
            decoder=decoder,
            artifacts=artifacts,
            abort=abort,
        )
    except RuntimeJobFailureError as exc:
        # Waiting again on the same failed job cannot help; run_and_await resubmits instead.
        exc.retryable = False
        raise
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, _attempts(credentials))
        raise


def _run_and_await(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
    timeout: float | None,
    stream: bool,
    decoder: Any,
    artifacts: bool,
    abort: threading.Event | None = None,
) -> Any:
    try:
        job = _submit(backend, program_id, inputs, options, resubmit_failed=True)
        return _await(
            job,
            timeout=timeout,
            stream=stream,
            decoder=decoder,
            artifacts=artifacts,
            abort=abort,
        )
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, backend.job_attempts)
        raise


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


def _delete_program(credentials: CredentialsLike, program_id: str, missing_ok: bool) -> None:
    try:
        _service(credentials).delete_program(program_id)
    except RuntimeProgramNotFound:
        if not missing_ok:
            raise
    pu.run_logger().info("Deleted runtime program %s", program_id)


def _get_job(credentials: CredentialsLike, job_id: str) -> dict[str, Any]:
    job = _service(credentials).job(job_id)
    info = {k: _plain(v) for k, v in job.metrics().items()}
    if job.state in (JobState.FAILED, JobState.CANCELLED_RAN_TOO_LONG):
        info["error_message"] = job.error_message()
    return info


def _list_programs(credentials: CredentialsLike, limit: int | None) -> list[dict[str, Any]]:
    programs = _service(credentials).programs(refresh=True, limit=limit)
    return [p.to_dict() for p in programs]


async def _in_thread_cancelling(fn: Any, job_lookup: Any, *args: Any) -> Any:
    """Run a waiting implementation on a worker thread; on cancellation stop it and cancel its job.

    ``asyncio`` cancellation (a task timeout, a cancelled flow run) cannot interrupt the thread, so
    the thread gets an abort flag it checks between long-polls, and the job is cancelled from here
    at once.
    """
    abort = threading.Event()
    try:
        return await asyncio.to_thread(functools.partial(fn, *args, abort))
    except BaseException:
        abort.set()
        job_id = job_lookup()
        if job_id:
            credentials = args[0]
            try:
                # Synchronous on purpose: an await here would itself be cancelled at once.
                job = _service(credentials).job(job_id)
                _cancel_quietly(job, "async task cancelled")
            except Exception as exc:
                pu.run_logger().error("Could not cancel runtime job %s: %s", job_id, exc)
        raise


# ------------------------------------------------------------------------------------------------
# Tasks.
# ------------------------------------------------------------------------------------------------


@task(name="upload-runtime-program", **_COMMON)
def upload_program(
    credentials: CredentialsLike,
    data: str | Path,
    metadata: dict[str, Any] | str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_execution_time: int | None = None,
    is_public: bool = False,
    exist_ok: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> str:
    """Upload a runtime program (source and metadata) and return its id.

    A retry of the task never uploads twice: the request carries an idempotency key derived from
    the task run.

    Args:
        credentials: The service to upload to.
        data: The program source, or the path of a ``.py`` file.
        metadata: Program metadata as a dict or a JSON file path (flat or ``spec`` form).
        name: Program name (overrides ``metadata``).
        description: Program description (overrides ``metadata``).
        max_execution_time: Seconds a job of the program may run (overrides ``metadata``).
        is_public: Whether other users may see and run the program.
        exist_ok: If a program of yours already has this name, update it instead of failing.
        extra_metadata: More keyword arguments for ``RuntimeService.upload_program``
            (``parameters``, ``return_values``, ``interim_results``, ``backend_requirements``).

    Returns:
        The program id.

    Raises:
        RuntimeDuplicateProgramError: A program with this name exists and ``exist_ok`` is false.
        IBMQNotAuthorizedError: The token may not upload programs.

    Example:
        ```python
        from prefect import flow
        from prefect_qiskit_runtime import QiskitRuntimeCredentials
        from prefect_qiskit_runtime.prefect.tasks import upload_program

        @flow
        def publish():
            creds = QiskitRuntimeCredentials.load("BLOCK_NAME")
            return upload_program(creds, "my_program.py", {"name": "my-program"}, exist_ok=True)
        ```
    """
    return _upload_program(
        credentials,
        data,
        metadata,
        name,
        description,
        max_execution_time,
        is_public,
        exist_ok,
        extra_metadata or {},
    )


@task(name="upload-runtime-program", **_COMMON)
async def aupload_program(
    credentials: CredentialsLike,
    data: str | Path,
    metadata: dict[str, Any] | str | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_execution_time: int | None = None,
    is_public: bool = False,
    exist_ok: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> str:
    """Async twin of :func:`upload_program`."""
    return await asyncio.to_thread(
        _upload_program,
        credentials,
        data,
        metadata,
        name,
        description,
        max_execution_time,
        is_public,
        exist_ok,
        extra_metadata or {},
    )


@task(name="run-runtime-program", task_run_name="run-{program_id}", **_COMMON)
def run_program(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: dict[str, Any] | None = None,
    *,
    options: dict[str, Any] | None = None,
) -> str:
    """Submit a job of ``program_id`` and return the job id without waiting.

    The block's ``default_inputs`` and ``options`` are merged under the call's. A retry of the task
    returns the job of the first attempt (idempotency key derived from the task run); it never makes
    a second one. Pair it with :func:`await_result`, or use :func:`run_and_await`.

    Args:
        backend: Where and how the job runs.
        program_id: The program to run (``"sampler"``, ``"estimator"``, ``"vqe"``, your own...).
        inputs: Program inputs.
        options: Run options for this job (``backend_name``, ``log_level``, ``image``...).

    Returns:
        The job id.

    Raises:
        RuntimeProgramNotFound: No such program.
        IBMQInputValueError: The inputs do not match the program's parameters.
    """
    return _run_program(backend, program_id, inputs, options)


@task(name="run-runtime-program", task_run_name="run-{program_id}", **_COMMON)
async def arun_program(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: dict[str, Any] | None = None,
    *,
    options: dict[str, Any] | None = None,
) -> str:
    """Async twin of :func:`run_program`."""
    return await asyncio.to_thread(_run_program, backend, program_id, inputs, options)


@task(name="await-runtime-job", task_run_name="await-{job_id}", **_COMMON)
def await_result(
    credentials: CredentialsLike,
    job_id: str,
    *,
    timeout: float | None = None,
    stream: bool = True,
    decoder: Any = None,
    artifacts: bool = True,
) -> Any:
    """Wait for a job, streaming its interim results into the run, and return its decoded result.

    Interim results go to the run logger, one truncated line each. A progress artifact and
    ``prefect-qiskit-runtime.job.*`` events follow the job at most about once a second, and the
    finished job leaves one table artifact of its metrics (key ``qiskit-runtime-job-metrics``).
    If the task times out, is cancelled or its flow run is cancelled, the job is cancelled first.

    Args:
        credentials: The service holding the job (a backend block works too).
        job_id: The job to wait for.
        timeout: Seconds to wait at most; the job is cancelled when it passes.
        stream: Stream interim results over the websocket while waiting.
        decoder: A ``ResultDecoder`` class for the result, such as ``RunnerResult``.
        artifacts: Create the progress and metrics artifacts.

    Returns:
        The decoded final result.

    Raises:
        RuntimeJobFailureError: The program raised (its traceback is in the message) or ran
            too long.
        RuntimeJobCancelled: The job was cancelled.
        RuntimeJobTimeoutError: ``timeout`` passed.
    """
    return _await_result(credentials, job_id, timeout, stream, decoder, artifacts)


@task(name="await-runtime-job", task_run_name="await-{job_id}", **_COMMON)
async def aawait_result(
    credentials: CredentialsLike,
    job_id: str,
    *,
    timeout: float | None = None,
    stream: bool = True,
    decoder: Any = None,
    artifacts: bool = True,
) -> Any:
    """Async twin of :func:`await_result`."""
    return await _in_thread_cancelling(
        _await_result,
        lambda: job_id,
        credentials,
        job_id,
        timeout,
        stream,
        decoder,
        artifacts,
    )


@task(name="run-and-await-runtime-program", task_run_name="run-{program_id}", **_COMMON)
def run_and_await(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: dict[str, Any] | None = None,
    *,
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    stream: bool = True,
    decoder: Any = None,
    artifacts: bool = True,
) -> Any:
    """Run a program and wait for its result: :func:`run_program` + :func:`await_result` in one.

    On a retry the task picks up the job its first attempt submitted. Only when that job ended with
    a retryable failure (lost worker, restarted service) does it submit a replacement, once.

    Args:
        backend: Where and how the job runs.
        program_id: The program to run.
        inputs: Program inputs.
        options: Run options for this job.
        timeout: Seconds to wait at most; the job is cancelled when it passes.
        stream: Stream interim results into the run's log while waiting.
        decoder: A ``ResultDecoder`` class for the result.
        artifacts: Create the progress and metrics artifacts.

    Returns:
        The decoded final result.

    Raises:
        RuntimeJobFailureError: The program raised (traceback in the message) or ran too long.
        RuntimeJobCancelled: The job was cancelled.

    Example:
        ```python
        from prefect import flow
        from prefect_qiskit_runtime import QiskitRuntimeBackend
        from prefect_qiskit_runtime.prefect.tasks import run_and_await

        @flow
        def hello():
            backend = QiskitRuntimeBackend.load("BLOCK_NAME")
            return run_and_await(backend, "hello-world", {"iterations": 3})
        ```
    """
    return _run_and_await(backend, program_id, inputs, options, timeout, stream, decoder, artifacts)


@task(name="run-and-await-runtime-program", task_run_name="run-{program_id}", **_COMMON)
async def arun_and_await(
    backend: QiskitRuntimeBackend,
    program_id: str,
    inputs: dict[str, Any] | None = None,
    *,
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    stream: bool = True,
    decoder: Any = None,
    artifacts: bool = True,
) -> Any:
    """Async twin of :func:`run_and_await`."""
    submitted: list[str] = []

    def body(*args: Any) -> Any:
        abort = args[-1]
        try:
            job = _submit(backend, program_id, inputs, options, resubmit_failed=True)
            submitted.append(job.job_id())
            return _await(
                job,
                timeout=timeout,
                stream=stream,
                decoder=decoder,
                artifacts=artifacts,
                abort=abort,
            )
        except QiskitRuntimeError as exc:
            pu.cap_attempts(exc, backend.job_attempts)
            raise

    return await _in_thread_cancelling(body, lambda: submitted[-1] if submitted else None, backend)


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


@task(name="delete-runtime-program", task_run_name="delete-program-{program_id}", **_COMMON)
def delete_program(
    credentials: CredentialsLike, program_id: str, *, missing_ok: bool = False
) -> None:
    """Delete one of your programs.

    Args:
        credentials: The service holding the program.
        program_id: The program to delete.
        missing_ok: Succeed when the program does not exist (already deleted).

    Raises:
        RuntimeProgramNotFound: No such program and ``missing_ok`` is false.
    """
    _delete_program(credentials, program_id, missing_ok)


@task(name="delete-runtime-program", task_run_name="delete-program-{program_id}", **_COMMON)
async def adelete_program(
    credentials: CredentialsLike, program_id: str, *, missing_ok: bool = False
) -> None:
    """Async twin of :func:`delete_program`."""
    await asyncio.to_thread(_delete_program, credentials, program_id, missing_ok)


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


@task(name="list-runtime-programs", **_COMMON)
def list_programs(credentials: CredentialsLike, limit: int | None = None) -> list[dict[str, Any]]:
    """List the programs you can run (yours and the public ones).

    Args:
        credentials: The service.
        limit: At most this many; ``None`` lists all.

    Returns:
        One dict per program: ``program_id``, ``name``, ``description``, ``max_execution_time``,
        ``parameters``, ``return_values``, ``interim_results``, ``is_public``...
    """
    return _list_programs(credentials, limit)


@task(name="list-runtime-programs", **_COMMON)
async def alist_programs(
    credentials: CredentialsLike, limit: int | None = None
) -> list[dict[str, Any]]:
    """Async twin of :func:`list_programs`."""
    return await asyncio.to_thread(_list_programs, credentials, limit)
