"""Submitting jobs exactly once per task run: :func:`submit_job` and the ``run-*`` tasks on it."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefect import task

from prefect_qiskit_runtime.core.exceptions import QiskitRuntimeError
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend
from prefect_qiskit_runtime.prefect.tasks._common import _COMMON, _service
from prefect_qiskit_runtime.prefect.tasks._observe import _emit_job, link_job
from prefect_qiskit_runtime.prefect.tasks.waiting import (
    _await,
    _in_thread_cancelling,
    _runtime_job_canceller,
)

if TYPE_CHECKING:
    import threading

    from prefect_qiskit_runtime.client import RuntimeJob, RuntimeService


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
    artifacts: bool = True,
) -> RuntimeJob:
    """Submit once per task run (see :func:`submit_job`) and announce the job (log, event, link)."""
    run_options = backend.run_options(dict(options or {}))
    service = _service(backend)
    job = submit_job(
        service,
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
    if artifacts:
        link_job(job, service.url)
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
    submitted: list[str] | None = None,
) -> Any:
    try:
        job = _submit(
            backend, program_id, inputs, options, resubmit_failed=True, artifacts=artifacts
        )
        if submitted is not None:
            submitted.append(job.job_id())  # the async twin cancels it if it is itself cancelled
        return _await(
            job,
            timeout=timeout,
            stream=stream,
            decoder=decoder,
            artifacts=artifacts,
            abort=abort,
            service_url=_service(backend).url,
        )
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, backend.job_attempts)
        raise


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
    a second one. The task run gets a link artifact to the job's REST resource (once, whatever the
    retries). Pair it with :func:`await_result`, or use :func:`run_and_await`.

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
        artifacts: Create the link, progress and metrics artifacts.

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
    return await _in_thread_cancelling(
        functools.partial(
            _run_and_await,
            backend,
            program_id,
            inputs,
            options,
            timeout,
            stream,
            decoder,
            artifacts,
            submitted=submitted,
        ),
        _runtime_job_canceller(backend, lambda: submitted[-1] if submitted else None),
    )
