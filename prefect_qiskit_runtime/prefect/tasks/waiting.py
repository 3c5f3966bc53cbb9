"""Waiting for a job in short long-polls, cancelling it when abandoned; ``await-runtime-job``."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from prefect import task

from prefect_qiskit_runtime.core.exceptions import (
    QiskitRuntimeError,
    RuntimeInvalidStateError,
    RuntimeJobCancelled,
    RuntimeJobFailureError,
    RuntimeJobTimeoutError,
)
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.tasks._common import (
    _COMMON,
    CredentialsLike,
    _attempts,
    _service,
)
from prefect_qiskit_runtime.prefect.tasks._observe import (
    _expected_iterations,
    _JobObserver,
    _plain,
    link_job,
)

if TYPE_CHECKING:
    from prefect_qiskit_runtime.client import RuntimeJob

T = TypeVar("T")

#: Longest single long-poll while waiting; it bounds how late a timeout or cancellation is noticed.
_WAIT_WINDOW = 2.0
#: How often a waiting task asks the Prefect API whether its flow run is being cancelled.
_CANCEL_CHECK_SECONDS = 5.0


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
    service_url: str | None = None,
) -> Any:
    """Wait for ``job`` while showing it in Prefect, then return its decoded result.

    ``service_url`` (the job's service root) adds the job's URL to its metrics row.

    Raises:
        RuntimeJobFailureError: The program raised (traceback in the message) or ran too long.
        RuntimeJobCancelled: The job was cancelled.
        RuntimeJobTimeoutError: ``timeout`` passed (the job is cancelled).
    """
    observer = _JobObserver(
        job,
        artifacts=artifacts,
        expected_iterations=_expected_iterations(job.inputs),
        service_url=service_url,
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


def _await_result(
    credentials: CredentialsLike,
    job_id: str,
    timeout: float | None,
    stream: bool,
    decoder: Any,
    artifacts: bool,
    abort: threading.Event | None = None,
) -> Any:
    service = _service(credentials)
    job = service.job(job_id)
    if artifacts:
        link_job(job, service.url)
    try:
        return _await(
            job,
            timeout=timeout,
            stream=stream,
            decoder=decoder,
            artifacts=artifacts,
            abort=abort,
            service_url=service.url,
        )
    except RuntimeJobFailureError as exc:
        # Waiting again on the same failed job cannot help; run_and_await resubmits instead.
        exc.retryable = False
        raise
    except QiskitRuntimeError as exc:
        pu.cap_attempts(exc, _attempts(credentials))
        raise


async def _in_thread_cancelling(
    fn: Callable[[threading.Event], T],
    cancel: Callable[[], None],
) -> T:
    """Run a waiting implementation on a worker thread; on cancellation stop it and cancel its job.

    ``asyncio`` cancellation (a task timeout, a cancelled flow run) cannot interrupt the thread, so
    the thread gets an abort flag it checks between polls, and ``cancel`` cancels the job from here
    at once.

    Args:
        fn: The implementation; it receives the abort flag.
        cancel: Cancels the job ``fn`` submitted or waits for, if any; it must not raise.

    Returns:
        What ``fn`` returns.
    """
    abort = threading.Event()
    try:
        return await asyncio.to_thread(fn, abort)
    except BaseException:
        abort.set()
        # Synchronous on purpose: an await here would itself be cancelled at once.
        cancel()
        raise


def _runtime_job_canceller(
    credentials: CredentialsLike, job_lookup: Callable[[], str | None]
) -> Callable[[], None]:
    """The ``cancel`` of :func:`_in_thread_cancelling` for a job of this package's service."""

    def cancel() -> None:
        job_id = job_lookup()
        if not job_id:
            return
        try:
            _cancel_quietly(_service(credentials).job(job_id), "async task cancelled")
        except Exception as exc:
            pu.run_logger().error("Could not cancel runtime job %s: %s", job_id, exc)

    return cancel


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

    Interim results go to the run logger, one truncated line each. The task run gets a link
    artifact to the job's REST resource, a progress artifact and ``prefect-qiskit-runtime.job.*``
    events follow the job at most about once a second, and the finished job leaves one table
    artifact of its metrics (key ``qiskit-runtime-job-metrics``); the link and the table are made
    once per task run, however often it is retried.
    If the task times out, is cancelled or its flow run is cancelled, the job is cancelled first.

    Args:
        credentials: The service holding the job (a backend block works too).
        job_id: The job to wait for.
        timeout: Seconds to wait at most; the job is cancelled when it passes.
        stream: Stream interim results over the websocket while waiting.
        decoder: A ``ResultDecoder`` class for the result, such as ``RunnerResult``.
        artifacts: Create the link, progress and metrics artifacts.

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
        functools.partial(_await_result, credentials, job_id, timeout, stream, decoder, artifacts),
        _runtime_job_canceller(credentials, lambda: job_id),
    )
