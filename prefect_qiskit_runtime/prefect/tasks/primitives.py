"""Primitive jobs through ``qiskit-ibm-runtime``: ``run-sampler`` and ``run-estimator`` tasks.

They take a :class:`~prefect_qiskit_runtime.prefect.blocks.QiskitRuntimeBackend` whose
``credentials`` are ``QiskitRuntimePlatformCredentials``
(IBM Quantum Platform, or a service of this package), submit one ``SamplerV2``/``EstimatorV2`` job
per task run, and return its ``qiskit.primitives.PrimitiveResult``. Exactly once and cancellation
are described in :mod:`prefect_qiskit_runtime.prefect.tasks._platform`.

The backend block maps onto the primitive's options: ``options`` is a dict of primitive options
(``{"default_shots": 1000, "simulator": {"seed_simulator": 7}}``), ``max_execution_time`` and
``log_level`` become ``max_execution_time`` and ``environment.log_level``; the call's ``options``
are merged over the block's. ``default_inputs`` does not apply to primitives.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from prefect import task

from prefect_qiskit_runtime.core.exceptions import QiskitRuntimeError
from prefect_qiskit_runtime.prefect import _utils as pu
from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend
from prefect_qiskit_runtime.prefect.tasks import _platform as pl
from prefect_qiskit_runtime.prefect.tasks._common import _COMMON
from prefect_qiskit_runtime.prefect.tasks.waiting import _in_thread_cancelling

Mode = Literal["job", "session", "batch"]
Primitive = Literal["sampler", "estimator"]

__all__ = ["arun_estimator", "arun_sampler", "primitive_options", "run_estimator", "run_sampler"]


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(dict(merged[name]), value)
        else:
            merged[name] = value
    return merged


def primitive_options(
    backend: QiskitRuntimeBackend, overrides: Mapping[str, Any] | None, tag: str | None
) -> dict[str, Any]:
    """The options of one primitive job: the block's, then ``overrides``, then the run's tag.

    Args:
        backend: The backend block.
        overrides: Primitive options of this call (nested dicts are merged).
        tag: The task run's job tag, added to ``environment.job_tags``.

    Returns:
        A new dict for ``SamplerV2(options=...)``/``EstimatorV2(options=...)``.
    """
    options: dict[str, Any] = {}
    if backend.max_execution_time:
        options["max_execution_time"] = backend.max_execution_time
    if backend.log_level:
        options["environment"] = {"log_level": backend.log_level}
    options = _merge(_merge(options, backend.options), overrides or {})
    if tag:
        environment = dict(options.get("environment") or {})
        environment["job_tags"] = [*environment.get("job_tags", []), tag]
        options["environment"] = environment
    return options


def _submit(
    service: Any,
    backend: QiskitRuntimeBackend,
    primitive: Primitive,
    pubs: Sequence[Any],
    run_kwargs: dict[str, Any],
    mode: Mode,
    options: dict[str, Any],
) -> Any:
    """Open the session or batch ``mode`` asks for and submit the job in it."""
    from prefect_qiskit_runtime.prefect.platform import import_ibm_runtime

    ibm = import_ibm_runtime()
    target: Any = service.backend(backend.backend_name)
    if mode != "job":
        target = (ibm.Session if mode == "session" else ibm.Batch)(backend=target)
    cls = ibm.SamplerV2 if primitive == "sampler" else ibm.EstimatorV2
    session = target if mode != "job" else None
    try:
        job = cls(mode=target, options=options).run(list(pubs), **run_kwargs)
    except BaseException:
        if session is not None:
            session.cancel()  # opened for this job, which never came
        raise
    return job


def _run_primitive(
    backend: QiskitRuntimeBackend,
    primitive: Primitive,
    pubs: Sequence[Any],
    run_kwargs: dict[str, Any],
    mode: Mode,
    options: Mapping[str, Any] | None,
    timeout: float | None,
    artifacts: bool,
    abort: threading.Event | None = None,
    attached: pl.Attached | None = None,
) -> Any:
    attached = attached if attached is not None else pl.Attached()
    credentials: Any = backend.credentials
    try:
        service = backend.get_platform_client()
        tag = pl.task_run_tag()
        job, recorded = pl.previous_job(service, tag)
        attached.own_session = mode != "job"
        if job is None:
            job = _submit(
                service,
                backend,
                primitive,
                pubs,
                run_kwargs,
                mode,
                primitive_options(backend, options, tag),
            )
            pu.run_logger().info(
                "Primitive job %s: %s on %s%s",
                job.job_id(),
                primitive,
                backend.backend_name,
                f" in {mode} {job.session_id}" if job.session_id else "",
            )
            pl.emit_job(job, primitive, "submitted", {"backend": backend.backend_name})
            pl.cancel_strays(service, tag, job.job_id())
        attached.job = job
        if not recorded:  # before waiting: a retry must find this job
            pl.record_job(job, primitive, credentials.job_url(job.job_id()))
        status = pl.wait_final(job, timeout, abort)
        if artifacts:
            pl.publish_metrics(job, primitive, credentials.job_url(job.job_id()), status)
        pl.emit_job(job, primitive, {"DONE": "completed"}.get(status, status.lower()))
        result = pl.final_result(job, status)
        pl.end_session(attached, cancel=False)
        return result
    except BaseException as raised:
        exc = pl.translate(raised)
        if isinstance(exc, QiskitRuntimeError):
            pu.cap_attempts(exc, backend.job_attempts)
        if not (isinstance(exc, QiskitRuntimeError) and exc.retryable):
            # No retry will re-attach: nothing may keep running on the endpoint.
            pl.abandon(attached, type(exc).__name__)
        if exc is raised:
            raise
        raise exc from raised


async def _arun_primitive(
    backend: QiskitRuntimeBackend,
    primitive: Primitive,
    pubs: Sequence[Any],
    run_kwargs: dict[str, Any],
    mode: Mode,
    options: Mapping[str, Any] | None,
    timeout: float | None,
    artifacts: bool,
) -> Any:
    """:func:`_run_primitive` on a worker thread; cancelling the caller abandons the job."""
    attached = pl.Attached()
    run = functools.partial(
        _run_primitive,
        backend,
        primitive,
        pubs,
        run_kwargs,
        mode,
        options,
        timeout,
        artifacts,
        attached=attached,
    )
    return await _in_thread_cancelling(
        run,
        lambda: pl.abandon(attached, "async task cancelled"),
    )


@task(name="run-sampler", task_run_name="sampler-{backend.backend_name}", **_COMMON)
def run_sampler(
    backend: QiskitRuntimeBackend,
    pubs: Sequence[Any],
    *,
    shots: int | None = None,
    mode: Mode = "job",
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    artifacts: bool = True,
) -> Any:
    """Run a ``SamplerV2`` job exactly once per task run and return its ``PrimitiveResult``.

    The job id is recorded in Prefect before the task waits; a retry re-attaches to that job
    instead of submitting another. If the task times out or is cancelled, or its flow run is
    cancelled, the job is cancelled and the task's session closed. ``shots`` is passed to
    ``SamplerV2.run`` (``None``: the options' ``default_shots``, else 4096).

    Args:
        backend: A backend block with ``QiskitRuntimePlatformCredentials``; its ``backend_name``
            names the endpoint's backend, its ``options`` are primitive options.
        pubs: The primitive unified blocs (circuits, or tuples with parameter values and, for the
            estimator, observables). On a device they must be ISA circuits (transpile first).
        mode: ``"job"`` (on the backend), ``"session"`` or ``"batch"``: the task opens a session
            or batch for its job and closes it when the job ends, or cancels it if abandoned.
        options: Primitive options of this call, merged over the block's.
        timeout: Seconds to wait for the job at most; the job is then cancelled.
        artifacts: Create the metrics table artifact (the job's record is always made).

    Returns:
        The job's ``qiskit.primitives.PrimitiveResult``.

    Raises:
        RuntimeJobFailureError: The job failed (its error message is in the exception).
        RuntimeJobCancelled: The job was cancelled.
        RuntimeJobTimeoutError: ``timeout`` passed (the job was cancelled).
        MissingExtraError: ``qiskit-ibm-runtime`` is not installed.
    """
    return _run_primitive(
        backend, "sampler", pubs, {"shots": shots}, mode, options, timeout, artifacts
    )


@task(name="run-estimator", task_run_name="estimator-{backend.backend_name}", **_COMMON)
def run_estimator(
    backend: QiskitRuntimeBackend,
    pubs: Sequence[Any],
    *,
    precision: float | None = None,
    mode: Mode = "job",
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    artifacts: bool = True,
) -> Any:
    """Run an ``EstimatorV2`` job exactly once per task run and return its ``PrimitiveResult``.

    Same contract as :func:`run_sampler`; ``precision`` is passed to ``EstimatorV2.run``.

    Args:
        backend: A backend block with ``QiskitRuntimePlatformCredentials``; its ``backend_name``
            names the endpoint's backend, its ``options`` are primitive options.
        pubs: The primitive unified blocs (circuits, or tuples with parameter values and, for the
            estimator, observables). On a device they must be ISA circuits (transpile first).
        mode: ``"job"`` (on the backend), ``"session"`` or ``"batch"``: the task opens a session
            or batch for its job and closes it when the job ends, or cancels it if abandoned.
        options: Primitive options of this call, merged over the block's.
        timeout: Seconds to wait for the job at most; the job is then cancelled.
        artifacts: Create the metrics table artifact (the job's record is always made).

    Returns:
        The job's ``qiskit.primitives.PrimitiveResult``.

    Raises:
        RuntimeJobFailureError: The job failed (its error message is in the exception).
        RuntimeJobCancelled: The job was cancelled.
        RuntimeJobTimeoutError: ``timeout`` passed (the job was cancelled).
        MissingExtraError: ``qiskit-ibm-runtime`` is not installed.
    """
    return _run_primitive(
        backend, "estimator", pubs, {"precision": precision}, mode, options, timeout, artifacts
    )


@task(name="run-sampler", task_run_name="sampler-{backend.backend_name}", **_COMMON)
async def arun_sampler(
    backend: QiskitRuntimeBackend,
    pubs: Sequence[Any],
    *,
    shots: int | None = None,
    mode: Mode = "job",
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    artifacts: bool = True,
) -> Any:
    """Async twin of :func:`run_sampler`."""
    return await _arun_primitive(
        backend, "sampler", pubs, {"shots": shots}, mode, options, timeout, artifacts
    )


@task(name="run-estimator", task_run_name="estimator-{backend.backend_name}", **_COMMON)
async def arun_estimator(
    backend: QiskitRuntimeBackend,
    pubs: Sequence[Any],
    *,
    precision: float | None = None,
    mode: Mode = "job",
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    artifacts: bool = True,
) -> Any:
    """Async twin of :func:`run_estimator`."""
    return await _arun_primitive(
        backend, "estimator", pubs, {"precision": precision}, mode, options, timeout, artifacts
    )
