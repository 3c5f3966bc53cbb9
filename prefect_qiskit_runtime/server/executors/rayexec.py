"""The Ray executor: each job runs as a Ray task of its own, in a Ray worker process of its own.

Start the service with ``prefect-qiskit-runtime server start --executor ray`` (or ``--executor
prefect_qiskit_runtime.server.executors.rayexec:factory``); the cluster is the one at
``--ray-address HOST:PORT`` (its GCS address, what ``ray start --head`` prints), else
``$PREFECT_QISKIT_RUNTIME_RAY_ADDRESS``, else ``$RAY_ADDRESS``, else the cluster running on this
machine. Every node needs this package and its dependencies installed, the same version as the
service: the workers import :mod:`.rayjob` from their own environment (the executor ships no code
and sets no ``runtime_env``). Ray is the ``ray`` extra (``pip install
'prefect-qiskit-runtime[ray]'``); without it, or with no cluster answering at the address, the
service refuses to start with one line saying so (:class:`~.base.ExecutorUnavailable`).

Process model::

    service (asyncio)                          Ray cluster
      RayExecutor ── submit ──► run_job (rayjob.py), a streaming-generator task, num_cpus=1,
        │                       max_calls=1: a worker process of its own, which exits after it
        └── async for ref ◄──── started, messages…, result | error (with the logs)

Semantics, as the local executor's:

- **isolation**: one worker process per job (``max_calls=1``; no retries, so a job never runs
  twice), its own working directory, limits and, where the node has Landlock, confinement
  (:mod:`.rayjob`);
- **cancel** (and ``max_execution_time``, whose watchdog in the scheduler cancels):
  ``ray.cancel(ref, force=True)`` kills the worker process, also one stuck in C code; a job still
  waiting for a CPU in Ray's queue is simply dropped;
- **interim results stream** while the job runs: the task is a generator, each yield reaches the
  executor (Ray's streaming generators: no extra actor, queue or network listener; the frames take
  Ray's own channel from the worker to its owner, this process);
- **logs**: stdout, stderr and logging of the job's process, cut to ``log_limit_bytes`` on the
  worker, come back with the last frame. A cancelled or lost job's log stays behind (its process
  was killed before it could send it);
- the outcome is an :class:`~.base.Outcome` like the local one's: ``COMPLETED``, ``FAILED`` with
  the program's traceback, ``CANCELLED``, or ``LOST`` (the worker or its node died, Ray refused the
  task), retryable.

Ray pickles only what the executor hands it: a dict of strings and numbers (the program's source,
the inputs as RuntimeEncoder text); the frames coming back are dicts of strings and numbers too.
``capacity`` is ``--workers``: the scheduler never submits more jobs at once, and a cluster with
fewer free CPUs queues the rest (their ``max_execution_time`` counts from their claim, as always).

Example:
    >>> executor = RayExecutor(4, address="10.0.0.5:6379")  # doctest: +SKIP
    >>> executor.connect()  # doctest: +SKIP
    >>> await executor.start(events)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prefect_qiskit_runtime.core.models import ReasonCode
from prefect_qiskit_runtime.server.executors.base import (
    Executor,
    ExecutorEvents,
    ExecutorUnavailable,
    JobSpec,
    Outcome,
)
from prefect_qiskit_runtime.server.executors.jobs import usage_of
from prefect_qiskit_runtime.server.executors.outcome import reported_outcome
from prefect_qiskit_runtime.server.runner import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
)

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.config import ServiceConfig

__all__ = ["CONNECT_TIMEOUT", "RAY_ADDRESS_ENV", "RayExecutor", "factory"]

logger = logging.getLogger(__name__)

#: The cluster's address, when ``--ray-address`` is not given.
RAY_ADDRESS_ENV = "PREFECT_QISKIT_RUNTIME_RAY_ADDRESS"
#: Seconds connecting to the cluster may take before the service gives up starting.
CONNECT_TIMEOUT = 30.0
#: The Ray namespace of the service's tasks.
NAMESPACE = "prefect-qiskit-runtime"


@dataclass(eq=False)
class _RayJob:
    """What the executor knows of one submitted job until it has finished."""

    spec: JobSpec
    stream: Any  # the task's ObjectRefGenerator
    submitted: float = field(default_factory=time.monotonic)
    follower: asyncio.Task[None] | None = None
    started: dict[str, Any] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None
    cancel_requested: bool = False


class RayExecutor(Executor):
    """Runs each job as a Ray task in a worker process of its own (see the module docstring).

    Args:
        capacity: How many jobs may run at once (the scheduler never submits more).
        address: The cluster's GCS address ``HOST:PORT``; ``None`` reads
            ``$PREFECT_QISKIT_RUNTIME_RAY_ADDRESS``, then ``$RAY_ADDRESS``, then uses the
            cluster running on this machine (``auto``).
        memory_limit_mb: Memory a job may allocate on top of its worker process as it was when the
            job began; ``JobSpec.memory_limit_mb`` overrides it per job. ``None`` for no limit.
        max_message_bytes: Largest interim message; a larger ``publish`` raises in the program.
        max_result_bytes: Largest final result.
        sandbox: Confinement of each job's process on its node: ``auto`` (Landlock where the
            node's kernel has it), ``landlock`` (a job on a node without it is lost, with the
            reason) or ``off``.
        protected_paths: What a confined job may never read (the service home, where a node
            shares the service's filesystem).
        num_cpus: Ray CPUs each job reserves.
        connect_timeout: Seconds :meth:`connect` waits for the cluster.
    """

    def __init__(
        self,
        capacity: int,
        *,
        address: str | None = None,
        memory_limit_mb: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        sandbox: Literal["auto", "landlock", "off"] = "auto",
        protected_paths: Sequence[str | os.PathLike[str]] = (),
        num_cpus: float = 1.0,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.capacity = capacity
        self.address = (
            address or os.environ.get(RAY_ADDRESS_ENV) or os.environ.get("RAY_ADDRESS") or "auto"
        )
        #: The confinement asked of every node (each node applies what its kernel offers).
        self.sandbox = sandbox
        self.protected_paths = [str(Path(p).resolve()) for p in protected_paths]
        self.memory_limit_mb = memory_limit_mb
        self.max_message_bytes = max_message_bytes
        self.max_result_bytes = max_result_bytes
        self.num_cpus = num_cpus
        self.connect_timeout = connect_timeout
        self._ray: Any = None
        self._task: Any = None
        self._events: ExecutorEvents | None = None
        self._jobs: dict[str, _RayJob] = {}
        self._closing = False

    # ---- connecting ----------------------------------------------------------------------------

    def connect(self) -> None:
        """Import Ray and connect to the cluster; does nothing once connected (blocking).

        Raises:
            ExecutorUnavailable: Ray is not installed, or no cluster answers at the address
                within ``connect_timeout``.
        """
        if self._ray is not None:
            return
        try:
            import ray
        except ImportError as exc:
            raise ExecutorUnavailable(
                "--executor ray needs Ray, which is not installed here: "
                "pip install 'prefect-qiskit-runtime[ray]'"
            ) from exc
        _probe(self.address, min(5.0, self.connect_timeout))
        _init_ray(ray, self.address, self.connect_timeout)
        from prefect_qiskit_runtime.server.executors.rayjob import run_job

        # No retries: a job whose worker died is reported lost, never run a second time unasked.
        self._task = ray.remote(
            num_cpus=self.num_cpus, max_calls=1, max_retries=0, num_returns="streaming"
        )(run_job)
        self._ray = ray
        resources = ray.cluster_resources()
        logger.info(
            "Ray executor connected to %s (%s CPUs in the cluster, capacity %d)",
            self.address,
            resources.get("CPU", 0),
            self.capacity,
        )

    # ---- Executor interface --------------------------------------------------------------------

    async def start(self, events: ExecutorEvents) -> None:
        """Connect to the cluster if :meth:`connect` has not yet (in a thread)."""
        self._events = events
        await asyncio.to_thread(self.connect)

    async def submit(self, spec: JobSpec) -> None:
        """Submit the job's task to the cluster; its frames are followed in a task of the loop.

        Raises:
            RuntimeError: If the executor was not started or is shutting down.
            ValueError: If a job with the same id is still running.
        """
        if self._events is None or self._task is None or self._closing:
            raise RuntimeError("The executor is not running")
        if spec.job_id in self._jobs:
            raise ValueError(f"Job {spec.job_id} is already running")
        limit = spec.memory_limit_mb if spec.memory_limit_mb is not None else self.memory_limit_mb
        payload = {
            "program_source": spec.program_source,
            "params_json": spec.params_json,
            "backend_name": spec.backend_name,
            "log_level": spec.log_level,
            "memory_limit_mb": limit,
            "log_limit_bytes": spec.log_limit_bytes,
            "max_message_bytes": self.max_message_bytes,
            "max_result_bytes": self.max_result_bytes,
            "sandbox": self.sandbox,
            "protected_paths": self.protected_paths,
        }
        stream = self._task.options(name=f"runtime-job-{spec.job_id}").remote(payload)
        job = _RayJob(spec=spec, stream=stream)
        self._jobs[spec.job_id] = job
        job.follower = asyncio.create_task(self._follow(job), name=f"ray-job-{spec.job_id}")

    async def cancel(self, job_id: str) -> bool:
        """Kill the job's worker process (``ray.cancel(force=True)``); ``CANCELLED`` follows.

        Returns:
            False if the job is unknown (already finished or never submitted).
        """
        job = self._jobs.get(job_id)
        if job is None:
            return False
        job.cancel_requested = True
        self._ray.cancel(job.stream, force=True)
        return True

    async def shutdown(self) -> None:
        """Kill every job's worker and disconnect from the cluster."""
        self._closing = True
        jobs = list(self._jobs.values())
        self._jobs.clear()
        for job in jobs:
            with contextlib.suppress(Exception):
                self._ray.cancel(job.stream, force=True)
            if job.follower is not None:
                job.follower.cancel()
        for job in jobs:
            if job.follower is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job.follower
        if self._ray is not None:
            # The workers of a driver that disconnects are ended by Ray as well.
            self._ray.shutdown()
            self._ray = None

    # ---- extras --------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """How many submitted jobs have not finished yet."""
        return len(self._jobs)

    # ---- following a job -----------------------------------------------------------------------

    async def _follow(self, job: _RayJob) -> None:
        job_id = job.spec.job_id
        try:
            async for ref in job.stream:
                await self._handle(job, await ref)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the worker or its node died, the task was cancelled or refused
            job.failure = _describe(exc)
        if self._jobs.pop(job_id, None) is not None:
            await self._call("on_finished", job_id, self._outcome(job))

    async def _handle(self, job: _RayJob, frame: dict[str, Any]) -> None:
        job_id = job.spec.job_id
        kind = frame.get("t")
        if kind == "started":
            job.started = frame
            if frame.get("version") != _version():
                logger.warning(
                    "job %s: the Ray worker runs prefect-qiskit-runtime %s, the service %s",
                    job_id,
                    frame.get("version"),
                    _version(),
                )
            await self._call("on_started", job_id)
        elif kind == "messages":
            if not job.cancel_requested:
                await self._call("on_messages", job_id, [str(m) for m in frame.get("data", [])])
        elif kind in ("result", "error"):
            job.last = frame

    def _outcome(self, job: _RayJob) -> Outcome:
        spec, last = job.spec, job.last
        details: dict[str, Any] = {
            "wall_seconds": round(time.monotonic() - job.submitted, 6),
            "executor": "ray",
            **{key: job.started[key] for key in ("pid", "node") if key in job.started},
            **usage_of(last),
        }
        limit = spec.memory_limit_mb if spec.memory_limit_mb is not None else self.memory_limit_mb
        setup = bool(last.get("setup"))
        failed = last.get("t") == "error" and not setup
        outcome = reported_outcome(
            cancelled=job.cancel_requested,
            result=str(last["data"]) if last.get("t") == "result" else None,
            error=str(last.get("traceback")) if failed else None,
            exc_type=str(last.get("exc_type")) if failed else None,
            memory_limit_mb=limit,
            logs=str(last.get("logs") or ""),
            details=details,
        )
        if outcome is not None:
            return outcome
        details["reason_code"] = ReasonCode.WORKER_LOST.value
        if setup:
            reason = str(last.get("traceback")).strip().rstrip(".")
        else:
            reason = job.failure or "its Ray task ended without reporting a result"
        return Outcome("LOST", error=f"The job was lost: {reason.rstrip('.')}.", details=details)

    async def _call(self, name: str, *args: Any) -> None:
        try:
            await getattr(self._events, name)(*args)
        except Exception:
            logger.exception("ExecutorEvents.%s failed for job %s", name, args[0])


def factory(config: ServiceConfig) -> RayExecutor:
    """The Ray executor for ``config``, connected (``server start --executor ray``).

    Args:
        config: Service settings: ``workers`` (capacity), memory limit, message limit, sandbox.

    Returns:
        A connected, not yet started ``RayExecutor`` at ``$PREFECT_QISKIT_RUNTIME_RAY_ADDRESS``.

    Raises:
        ExecutorUnavailable: Ray is not installed, or no cluster answers.
    """
    executor = RayExecutor(
        config.workers,
        memory_limit_mb=config.memory_limit_mb,
        max_message_bytes=config.max_message_bytes,
        sandbox=config.sandbox,
        protected_paths=config.protected_paths,
    )
    executor.connect()
    return executor


def _probe(address: str, timeout: float) -> None:
    """Fail fast where nothing listens at ``HOST:PORT`` (Ray itself would retry for minutes)."""
    if address == "auto":
        return
    if "://" in address:
        raise ExecutorUnavailable(
            f"--ray-address {address}: give the cluster's GCS address HOST:PORT "
            "(Ray Client addresses are not supported)"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorUnavailable(f"--ray-address {address}: expected HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ExecutorUnavailable(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head` or set --ray-address"
        ) from None


def _init_ray(ray: Any, address: str, timeout: float) -> None:
    """``ray.init`` bounded by ``timeout`` (it blocks while the cluster does not answer)."""
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except BaseException as exc:
            failure.append(exc)

    # A daemon thread, so that a hanging connection attempt does not keep the process alive.
    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ExecutorUnavailable(f"no Ray cluster answered at {address} within {timeout:.0f} s")
    if failure:
        raise ExecutorUnavailable(
            f"could not connect to the Ray cluster at {address}: {_describe(failure[0])}"
        )


def _describe(exc: BaseException) -> str:
    """One line for a Ray error: its class and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _version() -> str:
    from prefect_qiskit_runtime._version import __version__

    return __version__
