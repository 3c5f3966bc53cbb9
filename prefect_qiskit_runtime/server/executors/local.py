"""The local executor: a warm parent process that forks one isolated process per job.

Process model (see ``docs/internals.md``)::

    service (asyncio)                       warm parent (fresh interpreter, Qiskit imported once)
      LocalExecutor ── control socketpair ──┤  fork per job
      unix socket server ◄──────────────────┴── job process: runner.execute → hello, started,
                                                 message…, result | error, EOF

The warm parent is started with ``subprocess.Popen`` of a clean interpreter (``close_fds``), so
neither it nor any job process inherits the service's sockets or database connections. Jobs report
to a unix socket served on the service's event loop; each connection authenticates with the job's
one-time token. A job is finished when both its connection has closed and the warm parent has
reaped its process, so ``on_finished`` always comes after every ``on_message`` and the logs are
complete.

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
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_qiskit_runtime.models import ReasonCode
from prefect_qiskit_runtime.server.executors.base import (
    Executor,
    ExecutorEvents,
    JobSpec,
    Outcome,
)
from prefect_qiskit_runtime.server.executors.ipc import (
    EXIT_SETUP_FAILED,
    FrameTooLarge,
    encode_frame,
    read_frame,
)
from prefect_qiskit_runtime.server.runner import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_RESULT_BYTES,
)

__all__ = ["LocalExecutor"]

logger = logging.getLogger(__name__)

WARM_MODULE = "prefect_qiskit_runtime.server.executors.warm"
LOG_FILE = "job.log"
_CONTROL_MAX = 1 << 20
_HELLO_TIMEOUT = 30.0
#: How long a job's connection may stay open after its process was reaped (a grandchild holding it).
_LINGER = 1.0
#: How long to wait for the hello of a process that has already exited: it may have connected and
#: reported just before exiting, with its connection still waiting to be accepted.
_HELLO_GRACE = 2.0
#: Environment variables never passed to the warm parent (and so to programs).
_SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "CREDENTIAL", "DATABASE_URL")


@dataclass(eq=False)
class _Job:
    spec: JobSpec
    token: str
    submitted: float = field(default_factory=time.monotonic)
    generation: int = -1  # which warm parent got it; -1 = not handed over yet
    attempts: int = 0
    pid: int | None = None
    exit: dict[str, Any] | None = None
    lost_reason: str | None = None
    connected: bool = False
    conn_open: bool = False
    writer: asyncio.StreamWriter | None = None
    started: bool = False
    result: str | None = None
    error: str | None = None
    exc_type: str | None = None
    cancel_requested: bool = False
    finishing: bool = False
    linger: asyncio.TimerHandle | None = None
    hello_wait: asyncio.TimerHandle | None = None
    hello_given_up: bool = False


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
    """

    def __init__(
        self,
        capacity: int,
        *,
        memory_limit_mb: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
    ) -> None:
        self.capacity = capacity
        self.memory_limit_mb = memory_limit_mb
        self.max_message_bytes = max_message_bytes
        self.max_result_bytes = max_result_bytes
        self._python = python
        self._env = env
        self._events: ExecutorEvents | None = None
        self._jobs: dict[str, _Job] = {}
        self._pending: list[_Job] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tmpdir: str | None = None
        self._socket_path = ""
        self._server: asyncio.AbstractServer | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: asyncio.StreamWriter | None = None
        self._generation = 0
        self._ready = asyncio.Event()
        self._closing = False
        #: Facts about the current warm parent (pid, baseline address space) once it is ready.
        self.parent_info: dict[str, Any] = {}

    # ---- Executor interface --------------------------------------------------------------------

    async def start(self, events: ExecutorEvents) -> None:
        """Open the job socket and start the warm parent; returns before the parent is warm."""
        self._events = events
        # A short directory: unix socket paths are limited to 108 bytes.
        self._tmpdir = tempfile.mkdtemp(
            prefix="pqr-", dir="/tmp" if os.path.isdir("/tmp") else None
        )
        self._socket_path = os.path.join(self._tmpdir, "jobs.sock")
        self._server = await asyncio.start_unix_server(self._on_connection, path=self._socket_path)
        os.chmod(self._socket_path, 0o600)
        self._supervisor = asyncio.create_task(self._supervise(), name="warm-parent-supervisor")

    async def submit(self, spec: JobSpec) -> None:
        """Hand a job to the warm parent (or queue it until the parent is ready).

        Raises:
            RuntimeError: If the executor was not started or is shutting down.
            ValueError: If a job with the same id is still running.
        """
        if self._events is None or self._closing:
            raise RuntimeError("The executor is not running")
        if spec.job_id in self._jobs:
            raise ValueError(f"Job {spec.job_id} is already running")
        job = _Job(spec=spec, token=secrets.token_urlsafe(24))
        self._jobs[spec.job_id] = job
        if self._ready.is_set() and self._ctrl is not None:
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
        if job.pid is not None and job.exit is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)
        self._send_control({"t": "kill", "job_id": job_id})
        return True

    async def shutdown(self) -> None:
        """Kill every job and the warm parent, close the socket, remove the temporary directory."""
        self._closing = True
        for job in self._jobs.values():
            job.finishing = True  # running jobs get no on_finished
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._supervisor
        for job in list(self._jobs.values()):
            if job.pid is not None and job.exit is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGKILL)
            if job.writer is not None:
                job.writer.close()
        self._jobs.clear()
        self._pending.clear()
        await self._stop_parent()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
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
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def running(self) -> int:
        """How many submitted jobs have not finished yet."""
        return len(self._jobs)

    # ---- warm parent ---------------------------------------------------------------------------

    def _parent_env(self) -> dict[str, str]:
        env = dict(self._env if self._env is not None else os.environ)
        if self._env is None:
            env = {k: v for k, v in env.items() if not any(m in k.upper() for m in _SECRET_MARKERS)}
        # glibc reserves 64 MiB of address space per malloc arena and thread; with RLIMIT_AS that
        # would count against the job's memory limit.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        return env

    async def _supervise(self) -> None:
        failures = 0
        while not self._closing:
            became_ready = await self._run_parent()
            if self._closing:
                return
            failures = 0 if became_ready else failures + 1
            if failures >= 3:
                for job in list(self._pending):
                    self._pending.remove(job)
                    job.lost_reason = "the warm parent process could not start (see service log)"
                    self._maybe_finish(job)
            await asyncio.sleep(min(0.2 * 2**failures, 30.0) if failures else 0)

    async def _run_parent(self) -> bool:
        """Start one warm parent and serve its control channel until it dies."""
        self._generation += 1
        generation = self._generation
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        became_ready = False
        try:
            self._proc = subprocess.Popen(
                [self._python, "-m", WARM_MODULE, str(theirs.fileno()), str(self._tmpdir)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                cwd=self._tmpdir,
                env=self._parent_env(),
                start_new_session=True,
            )
        except OSError:
            logger.exception("Could not start the warm parent")
            ours.close()
            return False
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        self._ctrl = writer
        try:
            while True:
                frame = await read_frame(reader, _CONTROL_MAX)
                if frame is None:
                    break
                if frame["t"] == "ready":
                    became_ready = True
                    self.parent_info = {k: v for k, v in frame.items() if k != "t"}
                    self._ready.set()
                    pending, self._pending = self._pending, []
                    for job in pending:
                        self._hand_over(job)
                else:
                    self._on_control(frame)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            logger.exception("Control channel of the warm parent broke")
        finally:
            self._ready.clear()
            self._ctrl = None
            writer.close()
            proc = self._proc
            self._proc = None
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                code = await asyncio.to_thread(proc.wait)
                if not self._closing:
                    logger.warning("The warm parent exited (%s); restarting it", _describe(code))
            self._parent_lost(generation)
        return became_ready

    def _parent_lost(self, generation: int) -> None:
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
            if job.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGKILL)
            job.lost_reason = "the warm parent process died while the job was running"
            if job.writer is not None:
                job.writer.close()
            self._maybe_finish(job)

    async def _stop_parent(self) -> None:
        self._send_control({"t": "shutdown"})
        proc = self._proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 2)
        except (asyncio.TimeoutError, TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.to_thread(proc.wait)

    def _send_control(self, frame: dict[str, Any]) -> None:
        if self._ctrl is not None and not self._ctrl.is_closing():
            self._ctrl.write(encode_frame(frame))

    def _hand_over(self, job: _Job) -> None:
        job.generation = self._generation
        job.attempts += 1
        spec = job.spec
        limit = spec.memory_limit_mb if spec.memory_limit_mb is not None else self.memory_limit_mb
        self._send_control(
            {
                "t": "run",
                "job_id": spec.job_id,
                "token": job.token,
                "socket_path": self._socket_path,
                "spec": {
                    "program_source": spec.program_source,
                    "params_json": spec.params_json,
                    "backend_name": spec.backend_name,
                    "log_level": spec.log_level,
                    "workdir": str(spec.workdir),
                    "memory_limit_mb": limit,
                    "max_message_bytes": self.max_message_bytes,
                    "max_result_bytes": self.max_result_bytes,
                },
            }
        )

    def _on_control(self, frame: dict[str, Any]) -> None:
        job = self._jobs.get(frame.get("job_id", ""))
        if job is None:
            return
        kind = frame["t"]
        if kind == "spawned":
            job.pid = frame["pid"]
            if job.cancel_requested:
                self._send_control({"t": "kill", "job_id": job.spec.job_id})
        elif kind == "exited":
            job.exit = frame
            if job.conn_open and job.linger is None:
                # A process the job started may still hold the connection; the warm parent has
                # killed its group, so EOF is imminent — but never wait for it forever.
                job.linger = asyncio.get_running_loop().call_later(_LINGER, self._force_close, job)
            self._maybe_finish(job)
        elif kind == "spawn_failed":
            job.lost_reason = f"the job's process could not be started: {frame.get('error')}"
            self._maybe_finish(job)

    def _give_up_hello(self, job: _Job) -> None:
        job.hello_given_up = True
        self._maybe_finish(job)

    def _force_close(self, job: _Job) -> None:
        if job.writer is not None:
            job.writer.close()
        job.conn_open = False
        self._maybe_finish(job)

    # ---- job connections -----------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        job: _Job | None = None
        try:
            hello = await asyncio.wait_for(read_frame(reader, 4096), _HELLO_TIMEOUT)
            if not hello or hello.get("t") != "hello":
                return
            job = self._jobs.get(str(hello.get("job_id")))
            if (
                job is None
                or job.connected
                or job.finishing
                or not secrets.compare_digest(str(hello.get("token", "")), job.token)
            ):
                job = None
                return
            job.connected = job.conn_open = True
            job.writer = writer
            if job.hello_wait is not None:
                job.hello_wait.cancel()
            await self._serve_job(job, reader)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, ValueError):
            pass
        except asyncio.IncompleteReadError:
            pass  # the process died mid-frame; its exit status tells the story
        finally:
            writer.close()
            if job is not None:
                job.conn_open = False
                self._maybe_finish(job)

    async def _serve_job(self, job: _Job, reader: asyncio.StreamReader) -> None:
        assert self._events is not None
        job_id = job.spec.job_id
        max_frame = 2 * max(self.max_message_bytes, self.max_result_bytes) + 65536
        while True:
            try:
                frame = await read_frame(reader, max_frame)
            except FrameTooLarge as exc:
                job.error = f"The job's process sent an oversized frame and was stopped: {exc}\n"
                job.exc_type = "MessageTooLargeError"
                self._kill(job)
                return
            if frame is None:
                return
            kind = frame.get("t")
            if kind == "message":
                if not job.cancel_requested:
                    await self._call("on_message", job_id, str(frame.get("data")))
            elif kind == "started":
                if not job.started:
                    job.started = True
                    await self._call("on_started", job_id)
            elif kind == "result":
                job.result = str(frame.get("data"))
            elif kind == "error" and frame.get("setup"):
                job.lost_reason = str(frame.get("traceback")).strip().rstrip(".")
            elif kind == "error":
                job.error = str(frame.get("traceback"))
                job.exc_type = str(frame.get("exc_type"))

    def _kill(self, job: _Job) -> None:
        if job.pid is not None and job.exit is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job.pid, signal.SIGKILL)
        self._send_control({"t": "kill", "job_id": job.spec.job_id})

    async def _call(self, name: str, *args: Any) -> None:
        try:
            await getattr(self._events, name)(*args)
        except Exception:
            logger.exception("ExecutorEvents.%s failed for job %s", name, args[0])

    # ---- finishing -----------------------------------------------------------------------------

    def _maybe_finish(self, job: _Job) -> None:
        if job.finishing or job.conn_open:
            return
        if job.exit is None and job.lost_reason is None:
            return
        if (
            job.exit is not None
            and not job.connected
            and not job.hello_given_up
            and job.lost_reason is None
            and not job.cancel_requested
        ):
            if job.hello_wait is None:
                job.hello_wait = asyncio.get_running_loop().call_later(
                    _HELLO_GRACE, self._give_up_hello, job
                )
            return
        job.finishing = True
        for timer in (job.linger, job.hello_wait):
            if timer is not None:
                timer.cancel()
        task = asyncio.get_running_loop().create_task(self._finish(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, job: _Job) -> None:
        outcome = self._outcome(job)
        self._jobs.pop(job.spec.job_id, None)
        await self._call("on_finished", job.spec.job_id, outcome)

    def _outcome(self, job: _Job) -> Outcome:
        spec = job.spec
        details: dict[str, Any] = {"wall_seconds": round(time.monotonic() - job.submitted, 6)}
        if job.pid is not None:
            details["pid"] = job.pid
        status = None
        if job.exit is not None:
            status = int(job.exit["status"])
            details["cpu_seconds"] = job.exit.get("cpu_seconds")
            details["max_rss_kb"] = job.exit.get("max_rss_kb")
            if os.WIFSIGNALED(status):
                details["signal"] = signal.Signals(os.WTERMSIG(status)).name
            elif os.WIFEXITED(status):
                details["exit_code"] = os.WEXITSTATUS(status)
        limit = spec.memory_limit_mb if spec.memory_limit_mb is not None else self.memory_limit_mb
        details["memory_limit_exceeded"] = bool(limit) and job.exc_type == "MemoryError"
        logs = _read_logs(spec.workdir / LOG_FILE, spec.log_limit_bytes)
        if job.cancel_requested:
            details["reason_code"] = ReasonCode.CANCELLED_BY_USER.value
            return Outcome("CANCELLED", error="Cancelled", logs=logs, details=details)
        if job.result is not None and job.error is None:
            return Outcome("COMPLETED", result=job.result, logs=logs, details=details)
        if job.error is not None:
            details["exception"] = job.exc_type
            error = job.error
            if details["memory_limit_exceeded"]:
                details["reason_code"] = ReasonCode.MEMORY_LIMIT.value
                error += f"(The job exceeded its memory limit of {limit} MB.)\n"
            elif job.exc_type == "MessageTooLargeError":
                details["reason_code"] = ReasonCode.INVALID_RESULT.value
            else:
                details["reason_code"] = ReasonCode.PROGRAM_ERROR.value
            return Outcome("FAILED", error=error, logs=logs, details=details)
        # Killed, crashed or orphaned: nothing the program said explains it, so running it again
        # may work — except when the program itself ended its process without a result.
        details["reason_code"] = ReasonCode.WORKER_LOST.value
        if job.lost_reason is not None:
            reason = f"The job was lost: {job.lost_reason}."
        elif status is not None and os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status))
            reason = f"The job's process was killed by signal {sig.name} ({int(sig)})"
            if sig == signal.SIGKILL:
                reason += " (killed from outside, for example by the out-of-memory killer)"
            elif sig == signal.SIGSEGV:
                reason += " (it crashed)"
            reason += " before it reported a result."
        elif status is not None:
            if os.WEXITSTATUS(status) != EXIT_SETUP_FAILED:
                details["reason_code"] = ReasonCode.PROGRAM_ERROR.value
            reason = (
                f"The job's process exited with code {os.WEXITSTATUS(status)} "
                "before it reported a result."
            )
        else:  # pragma: no cover - _maybe_finish guarantees one of the above
            reason = "The job's process ended without reporting a result."
        return Outcome("LOST", error=reason, logs=logs, details=details)


def _read_logs(path: Path, limit: int) -> str:
    """Read a job's log file, cut to ``limit`` bytes with a marker line."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
            if len(data) <= limit:
                return data.decode("utf-8", errors="replace")
            total = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return ""
    head = data[:limit]
    cut = head.rfind(b"\n")
    if cut > limit // 2:
        head = head[: cut + 1]
    elif not head.endswith(b"\n"):
        head += b"\n"
    omitted = total - len(head)
    text = head.decode("utf-8", errors="replace")
    return text + f"... [log truncated: {omitted} more bytes not kept, limit {limit} bytes]\n"


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
