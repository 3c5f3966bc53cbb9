"""The local executor: a warm parent process that runs each job in an isolated process of its own.

Process model (see ``docs/internals.md``)::

    service (asyncio)                       warm parent (fresh interpreter, Qiskit imported once)
      LocalExecutor ── control socketpair ──┤  a prepared spare per free slot (forked ahead)
      unix socket server ◄──────────────────┴── job process: runner.execute → hello, started,
                                                 message…, result | error, EOF

:class:`LocalExecutor` (this module) keeps the jobs and decides when one is finished;
:mod:`.parent` starts and restarts the warm parent and carries its control channel;
:mod:`.jobs` serves the unix socket the job processes report to; :mod:`.outcome` turns what is
known of a finished job into its :class:`~.base.Outcome`. The warm parent itself is :mod:`.warm`.

A job is finished once its connection has closed and either its ``result``/``error`` frame has
arrived (the process flushed and detached its log before sending it, see
:func:`~prefect_qiskit_runtime.server.executors.child.detach_logs`) or the warm parent has reaped
the process. ``on_finished`` therefore always comes after every ``on_messages`` and the logs are
complete; the reap still happens, and a process that outlives its result by ``LINGER`` is killed.

Example:
    >>> executor = LocalExecutor(capacity=2, memory_limit_mb=2048)  # doctest: +SKIP
    >>> await executor.start(events)  # doctest: +SKIP
    >>> await executor.submit(JobSpec(job_id="j1", ...))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prefect_qiskit_runtime.server.executors import calls
from prefect_qiskit_runtime.server.executors.base import (
    Executor,
    ExecutorEvents,
    JobSpec,
)
from prefect_qiskit_runtime.server.executors.ipc import LOG_FILE as LOG_FILE
from prefect_qiskit_runtime.server.executors.jobs import LINGER, JobConnections, LocalJob
from prefect_qiskit_runtime.server.executors.outcome import job_outcome
from prefect_qiskit_runtime.server.executors.parent import WARM_MODULE as WARM_MODULE
from prefect_qiskit_runtime.server.executors.parent import WarmParentSupervisor
from prefect_qiskit_runtime.server.executors.sandbox import resolve_sandbox
from prefect_qiskit_runtime.server.runner import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
)

__all__ = ["LocalExecutor"]

logger = logging.getLogger(__name__)

#: How long to wait for the hello of a process that has already exited: it may have connected and
#: reported just before exiting, with its connection still waiting to be accepted.
_HELLO_GRACE = 2.0
#: A job frame carries its payload as a JSON string, which escaping may double; the rest of the
#: frame fits in this.
_FRAME_OVERHEAD = 65536


class LocalExecutor(Executor):
    """Runs jobs in processes forked from a warm parent that has already imported Qiskit.

    Args:
        capacity: How many jobs may run at once (the scheduler never submits more).
        memory_limit_mb: Memory a job may allocate on top of the preloaded interpreter (its
            ``RLIMIT_AS`` is the warm parent's address-space size plus this);
            ``JobSpec.memory_limit_mb`` overrides it per job. ``None`` for no limit.
        max_message_bytes: Largest interim message; a larger ``publish`` raises in the program.
        max_result_bytes: Largest final result.
        python: The interpreter that runs the warm parent.
        env: Environment of the warm parent (default: this process's, without secrets).
        spares: Prepared processes kept ready when no job runs (default ``capacity``: one per
            free slot); 0 forks each job's process when the job arrives.
        warm_up: Whether spares run a tiny Aer estimate and sample before they wait for a job (an
            estimator job then runs about three times faster, for about 35 ms of CPU per
            spare): ``auto`` while the recent jobs use enough CPU to gain from it (see
            :mod:`.spares`), ``always`` or ``never``.
        sandbox: Confinement of each job's process (:mod:`.sandbox`): ``landlock`` (refused if
            the kernel lacks it), ``auto`` (Landlock where available, else none, with a warning)
            or ``off``. :attr:`sandbox` says what is in force.
        protected_paths: What a confined job may never read (the service home, its database);
            its own working directory is granted anyway.
        session_workers: Processes kept for dedicated sessions, at most (default ``capacity``;
            0 runs a session's jobs like any other): a session's jobs run one after the other
            in one process (:mod:`.session_workers`).
        session_idle_timeout: Seconds a session's worker waits for the session's next job.

    Raises:
        SandboxUnavailable: ``sandbox="landlock"`` on a kernel without Landlock.
    """

    relays_calls = True

    def __init__(
        self,
        capacity: int,
        *,
        memory_limit_mb: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        spares: int | None = None,
        warm_up: Literal["auto", "always", "never"] = "auto",
        sandbox: Literal["auto", "landlock", "off"] = "off",
        protected_paths: Sequence[str | os.PathLike[str]] = (),
        session_workers: int | None = None,
        session_idle_timeout: float = 60.0,
    ) -> None:
        self.capacity = capacity
        self.session_workers = capacity if session_workers is None else session_workers
        self.session_idle_timeout = session_idle_timeout
        #: The confinement in force for job processes: ``"landlock"`` or ``"off"``.
        self.sandbox = resolve_sandbox(sandbox)
        self.protected_paths = [str(Path(p).resolve()) for p in protected_paths]
        self.spares = capacity if spares is None else spares
        self.warm_up = warm_up
        self.memory_limit_mb = memory_limit_mb
        self.max_message_bytes = max_message_bytes
        self.max_result_bytes = max_result_bytes
        self._events: ExecutorEvents | None = None
        self._jobs: dict[str, LocalJob] = {}
        #: Finished jobs whose process has not been reaped yet.
        self._exiting: dict[str, LocalJob] = {}
        self._pending: list[LocalJob] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tmpdir: str | None = None
        self._socket_path = ""
        self._supervisor: asyncio.Task[None] | None = None
        self._parent = WarmParentSupervisor(
            python=python,
            env=env,
            on_connected=self._configure_parent,
            on_frame=self._on_control,
            on_lost=self._parent_lost,
            on_failing=self._fail_pending,
        )
        self._connections = JobConnections(
            self._jobs,
            max_frame=2 * max(max_message_bytes, max_result_bytes) + _FRAME_OVERHEAD,
            notify=self._call,
            kill=self._kill,
            finish=self._maybe_finish,
        )

    # ---- Executor interface --------------------------------------------------------------------

    async def start(self, events: ExecutorEvents) -> None:
        """Open the job socket and start the warm parent; returns before the parent is warm."""
        self._events = events
        # A short directory: unix socket paths are limited to 108 bytes.
        self._tmpdir = tempfile.mkdtemp(
            prefix="pqr-", dir="/tmp" if os.path.isdir("/tmp") else None
        )
        self._socket_path = os.path.join(self._tmpdir, "jobs.sock")
        await self._connections.open(self._socket_path)
        self._supervisor = asyncio.create_task(
            self._parent.supervise(self._tmpdir), name="warm-parent-supervisor"
        )

    async def submit(self, spec: JobSpec) -> None:
        """Hand a job to the warm parent (or queue it until the parent is ready).

        Raises:
            RuntimeError: If the executor was not started or is shutting down.
            ValueError: If a job with the same id is still running.
        """
        if self._events is None or self._parent.closing:
            raise RuntimeError("The executor is not running")
        if spec.job_id in self._jobs:
            raise ValueError(f"Job {spec.job_id} is already running")
        job = LocalJob(spec=spec, token=secrets.token_urlsafe(24))
        self._jobs[spec.job_id] = job
        if self._parent.accepting:
            self._hand_over(job)
        else:
            self._pending.append(job)

    async def cancel(self, job_id: str) -> bool:
        """Kill a job's process group (SIGKILL); ``on_finished`` follows with ``CANCELLED``.

        Returns:
            False if the job is unknown or already finishing.
        """
        job = self._jobs.get(job_id)
        if job is None or job.finishing:
            return False
        job.cancel_requested = True
        if job in self._pending:
            self._pending.remove(job)
            job.lost_reason = "cancelled before it started"
            self._maybe_finish(job)
            return True
        self._kill(job)
        return True

    def has_job(self, job_id: str) -> bool:
        """Whether the job runs here (or waits for the warm parent) and is not finishing."""
        job = self._jobs.get(job_id)
        return job is not None and not job.finishing and not job.cancel_requested

    async def call(self, job_id: str, data: str) -> str:
        """Send one call to the job's program over its connection; the reply's JSON text.

        Raises:
            ChannelError: See :meth:`Executor.call`.
        """
        if not self.has_job(job_id):
            raise calls.ChannelUnavailable(f"job {job_id} is not running on this instance")
        return await calls.send_call(self._jobs[job_id], data)

    def end_calls(self, job_id: str) -> bool:
        """Tell the job's program that no more calls come."""
        if not self.has_job(job_id):
            return False
        calls.end_calls(self._jobs[job_id])
        return True

    async def shutdown(self) -> None:
        """Kill every job and the warm parent, close the socket, remove the temporary directory."""
        self._parent.closing = True
        for job in self._jobs.values():
            job.finishing = True  # running jobs get no on_finished
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        for job in [*self._jobs.values(), *self._exiting.values()]:
            for timer in (job.linger, job.hello_wait, job.kill_timer):
                if timer is not None:
                    timer.cancel()
            _kill_group(job)
            if job.writer is not None:
                job.writer.close()
        self._jobs.clear()
        self._exiting.clear()
        self._pending.clear()
        await self._parent.stop()
        await self._connections.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    # ---- extras --------------------------------------------------------------------------------

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the warm parent has imported Qiskit and accepts jobs.

        Raises:
            TimeoutError: If it is not ready within ``timeout`` seconds.
        """
        await asyncio.wait_for(self._parent.ready.wait(), timeout)

    @property
    def running(self) -> int:
        """How many submitted jobs have not finished yet."""
        return len(self._jobs)

    @property
    def parent_info(self) -> dict[str, Any]:
        """Facts about the current warm parent (pid, baseline address space) once it is ready."""
        return self._parent.parent_info

    @property
    def spares_ready(self) -> dict[int, bool]:
        """Idle spare processes ready for a job: pid -> whether it has warmed up."""
        return self._parent.spares_ready

    # ---- the warm parent's side of the jobs ----------------------------------------------------

    def _configure_parent(self) -> None:
        self._parent.send(
            {
                "t": "spares",
                "count": self.spares,
                "warm_up": self.warm_up,
                "sessions": self.session_workers,
                "session_idle": self.session_idle_timeout,
            }
        )

    async def end_session(self, session_id: str) -> None:
        """A session accepts no more jobs: its worker process goes once its job is over."""
        self._parent.send({"t": "end_session", "session_id": session_id})

    def _hand_over(self, job: LocalJob) -> None:
        job.generation = self._parent.generation
        job.attempts += 1
        spec = job.spec
        limit = spec.memory_limit_mb if spec.memory_limit_mb is not None else self.memory_limit_mb
        self._parent.send(
            {
                "t": "run",
                "job_id": spec.job_id,
                "token": job.token,
                "socket_path": self._socket_path,
                "session_id": spec.session_id if self.session_workers else None,
                "spec": {
                    "session_dir": str(spec.workdir.parent) if spec.session_id else None,
                    "program_source": spec.program_source,
                    "params_json": spec.params_json,
                    "backend_name": spec.backend_name,
                    "log_level": spec.log_level,
                    "workdir": str(spec.workdir),
                    "memory_limit_mb": limit,
                    "max_message_bytes": self.max_message_bytes,
                    "max_result_bytes": self.max_result_bytes,
                    "sandbox": self.sandbox,
                    "protected_paths": self.protected_paths,
                },
            }
        )

    def _on_control(self, frame: dict[str, Any]) -> None:
        kind = frame["t"]
        if kind == "ready":
            pending, self._pending = self._pending, []
            for waiting in pending:
                self._hand_over(waiting)
            return
        job_id = frame.get("job_id", "")
        done = self._exiting.get(job_id)
        if done is not None:  # finished already: only the reap was missing
            if kind == "spawned":
                done.pid = frame["pid"]
            elif kind == "exited":
                self._exiting.pop(job_id)
                done.exit = frame
                if done.kill_timer is not None:
                    done.kill_timer.cancel()
            return
        job = self._jobs.get(job_id)
        if job is None:
            return
        if kind == "spawned":
            job.pid = frame["pid"]
            job.process = frame.get("kind")
            job.kept = bool(frame.get("kept"))
            if job.cancel_requested:
                self._parent.send({"t": "kill", "job_id": job.spec.job_id})
        elif kind == "exited":
            job.exit = frame
            # A process the job started in a session of its own may still hold the connection;
            # the warm parent has killed the job's group, so EOF is imminent, but never wait for
            # it forever: close it once it stays silent while the executor waits for data.
            self._connections.arm_linger(job)
            self._maybe_finish(job)
        elif kind == "spawn_failed":
            job.lost_reason = f"the job's process could not be started: {frame.get('error')}"
            self._maybe_finish(job)

    def _parent_lost(self, generation: int) -> None:
        for job_id, job in list(self._exiting.items()):
            if job.generation == generation:  # its process died with the warm parent
                self._exiting.pop(job_id)
                if job.kill_timer is not None:
                    job.kill_timer.cancel()
        for job in list(self._jobs.values()):
            if job.generation != generation or job.finishing or job.exit is not None:
                continue
            if (
                job.pid is None
                and not job.connected
                and job.attempts < 2
                and not job.cancel_requested
            ):
                # It never ran: give it to the next warm parent.
                job.generation = -1
                self._pending.append(job)
                continue
            _kill_group(job)
            job.lost_reason = "the warm parent process died while the job was running"
            if job.writer is not None:
                job.writer.close()
            self._maybe_finish(job)

    def _fail_pending(self) -> None:
        for job in list(self._pending):
            self._pending.remove(job)
            job.lost_reason = "the warm parent process could not start (see service log)"
            self._maybe_finish(job)

    def _kill(self, job: LocalJob) -> None:
        _kill_group(job)
        self._parent.send({"t": "kill", "job_id": job.spec.job_id})

    async def _call(self, name: str, *args: Any) -> None:
        try:
            await getattr(self._events, name)(*args)
        except Exception:
            logger.exception("ExecutorEvents.%s failed for job %s", name, args[0])

    # ---- finishing -----------------------------------------------------------------------------

    def _maybe_finish(self, job: LocalJob) -> None:
        if job.finishing or job.conn_open:
            return
        # The process's last word (result or error, sent after its logs were flushed and
        # detached) and EOF are enough: the reap is not waited for. A cancelled job is waited
        # for, so that it is gone when the scheduler hears of it.
        reported = not job.cancel_requested and (job.result is not None or job.error is not None)
        if job.exit is None and job.lost_reason is None and not reported:
            return
        if self._awaiting_hello(job):
            return
        job.finishing = True
        for timer in (job.linger, job.hello_wait):
            if timer is not None:
                timer.cancel()
        if job.generation == self._parent.generation and job.generation >= 0:
            self._release(job)
        task = asyncio.get_running_loop().create_task(self._finish(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _awaiting_hello(self, job: LocalJob) -> bool:
        """Whether a job whose process exited unconnected still gets ``_HELLO_GRACE`` to connect."""
        if (
            job.exit is None
            or job.connected
            or job.hello_given_up
            or job.lost_reason is not None
            or job.cancel_requested
        ):
            return False
        if job.hello_wait is None:
            job.hello_wait = asyncio.get_running_loop().call_later(
                _HELLO_GRACE, self._give_up_hello, job
            )
        return True

    def _give_up_hello(self, job: LocalJob) -> None:
        job.hello_given_up = True
        self._maybe_finish(job)

    def _release(self, job: LocalJob) -> None:
        """Free the job's slot in the warm parent; a process still running gets ``LINGER``."""
        # The job's CPU time tells the warm parent whether warming spares up pays off.
        release: dict[str, Any] = {"t": "release", "job_id": job.spec.job_id}
        if "cpu_seconds" in job.usage:
            release["cpu_seconds"] = job.usage["cpu_seconds"]
        self._parent.send(release)
        if job.kept:
            return  # a session's worker outlives its jobs (the warm parent kept it)
        if job.exit is None and (job.pid is not None or job.connected):
            # Its process said its last word: it gets LINGER to exit, then it is killed.
            self._exiting[job.spec.job_id] = job
            job.kill_timer = asyncio.get_running_loop().call_later(
                LINGER, self._kill_lingering, job
            )

    def _kill_lingering(self, job: LocalJob) -> None:
        job.kill_timer = None
        if self._exiting.get(job.spec.job_id) is job:
            logger.warning("job %s: its process outlived its result; killing it", job.spec.job_id)
            self._parent.send({"t": "kill", "job_id": job.spec.job_id})

    async def _finish(self, job: LocalJob) -> None:
        outcome = job_outcome(job, self.memory_limit_mb)
        calls.fail_calls(job, f"the job ended ({outcome.status})")
        self._jobs.pop(job.spec.job_id, None)
        await self._call("on_finished", job.spec.job_id, outcome)


def _kill_group(job: LocalJob) -> None:
    """SIGKILL the job's process group, unless it is known to be gone."""
    if job.pid is not None and job.exit is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGKILL)
