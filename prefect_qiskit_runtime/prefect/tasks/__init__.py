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

The tasks live in modules by concern: ``submission`` (``submit_job``, ``run_program``,
``run_and_await``), ``waiting`` (``await_result``), ``programs`` (upload, delete, list) and ``jobs``
(cancel, delete, inspect); the events and artifacts of a job come from ``_observe``.

``primitives`` (``run_sampler``, ``run_estimator``) sends primitive jobs through
``qiskit-ibm-runtime`` to a Qiskit Runtime endpoint (IBM Quantum Platform, or this package's
service) when the backend block holds ``QiskitRuntimePlatformCredentials``; each task run owns one
remote job, recorded in Prefect before it waits and re-attached on a retry (``_platform``).
"""

from __future__ import annotations

from prefect_qiskit_runtime.prefect.tasks._common import CredentialsLike as CredentialsLike
from prefect_qiskit_runtime.prefect.tasks._observe import JOB_METRICS_ARTIFACT_KEY
from prefect_qiskit_runtime.prefect.tasks.jobs import (
    acancel_job,
    adelete_job,
    aget_job,
    cancel_job,
    delete_job,
    get_job,
)
from prefect_qiskit_runtime.prefect.tasks.primitives import (
    arun_estimator,
    arun_sampler,
    run_estimator,
    run_sampler,
)
from prefect_qiskit_runtime.prefect.tasks.programs import (
    adelete_program,
    alist_programs,
    aupload_program,
    delete_program,
    list_programs,
    upload_program,
)
from prefect_qiskit_runtime.prefect.tasks.submission import (
    arun_and_await,
    arun_program,
    run_and_await,
    run_program,
    submit_job,
)
from prefect_qiskit_runtime.prefect.tasks.waiting import aawait_result, await_result

__all__ = [
    "JOB_METRICS_ARTIFACT_KEY",
    "aawait_result",
    "acancel_job",
    "adelete_job",
    "adelete_program",
    "aget_job",
    "alist_programs",
    "arun_and_await",
    "arun_estimator",
    "arun_program",
    "arun_sampler",
    "aupload_program",
    "await_result",
    "cancel_job",
    "delete_job",
    "delete_program",
    "get_job",
    "list_programs",
    "run_and_await",
    "run_estimator",
    "run_program",
    "run_sampler",
    "submit_job",
    "upload_program",
]
