"""The local executor: a warm parent process that runs each job in an isolated process of its own.

Process model (see ``docs/internals.md``)::

    service (asyncio)                       warm parent (fresh interpreter, Qiskit imported once)
      LocalExecutor ── control socketpair ──┤  a prepared spare per free slot (forked ahead)
      unix socket server ◄──────────────────┴── job process: runner.execute → hello, started,
                                                 message…, result | error, EOF

The warm parent is started with ``subprocess.Popen`` of a clean interpreter (``close_fds``), so
neither it nor any job process inherits the service's sockets or database connections. Jobs report
to a unix socket served on the service's event loop; each connection authenticates with the job's
one-time token. Every frame already read is handled before the next read, and consecutive interim
messages go to one ``on_messages`` call.

A job is finished once its connection has closed and either its ``result``/``error`` frame has
arrived (the process flushed and detached its log before sending it, see
:func:`~prefect_qiskit_runtime.server.executors.child._detach_logs`) or the warm parent has reaped
the process. ``on_finished`` therefore always comes after every ``on_messages`` and the logs are
complete; the reap still happens, and a process that outlives its result by ``_LINGER`` is killed.
A connection is closed by the executor only when it is stuck: its process has exited and nothing
arrived on it for ``_LINGER`` while the executor was waiting for data.

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
from typing import Any, Literal

from prefect_qiskit_runtime.core.models import ReasonCode
from prefect_qiskit_runtime.server.executors.base import (
    Executor,
    ExecutorEvents,
    JobSpec,
    Outcome,
)
from prefect_qiskit_runtime.server.executors.ipc import (
    EXIT_SETUP_FAILED,
    LOG_FILE,
    FrameBuffer,
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
_CONTROL_MAX = 1 << 20
_HELLO_TIMEOUT = 30.0
#: How long a job's connection may stay silent after its process was reaped (a process the job
#: started in a session of its own may hold it) while the executor waits for data; and how long a
#: process may outlive the result it reported.
_LINGER = 1.0
#: Bytes a job connection buffers before it stops reading from the socket (the job then blocks in
#: ``publish`` until the executor has caught up).
_STREAM_LIMIT = 256 * 1024
#: Most bytes taken from a job connection's buffer at once.
_READ_CHUNK = 1 << 20
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
    process: str | None = None  # "warm" or "cold" spare, or "fresh" fork
    exit: dict[str, Any] | None = None
    lost_reason: str | None = None
    connected: bool = False
    conn_open: bool = False
    writer: asyncio.StreamWriter | None = None
    started: bool = False
    result: str | None = None
    error: str | None = None
    exc_type: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)  # what the process said of its own usage
    cancel_requested: bool = False
    finishing: bool = False
    reader: _JobReader | None = None
    busy: bool = False  # frames read and being handled (the executor's side is slow, not the job)
    linger: asyncio.TimerHandle | None = None
    linger_mark: int = -1
    hello_wait: asyncio.TimerHandle | None = None
    hello_given_up: bool = False
    kill_timer: asyncio.TimerHandle | None = None


class _JobReader(asyncio.StreamReader):
    """A stream reader that counts the bytes it was given: progress of a job's connection."""

    fed = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # typeshed is wider
        self.fed += len(data)
        super().feed_data(data)


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
        spares: int | None = None,
        warm_up: Literal["auto", "always", "never"] = "auto",
    ) -> None:
        self.capacity = capacity
        self.spares = capacity if spares is None else spares
        self.warm_up = warm_up
        self.memory_limit_mb = memory_limit_mb
        self.max_message_bytes = max_message_bytes
        self.max_result_bytes = max_result_bytes
        self._python = python
        self._env = env
        self._events: ExecutorEvents | None = None
        self._jobs: dict[str, _Job] = {}
        #: Finished jobs whose process has not been reaped yet.
        self._exiting: dict[str, _Job] = {}
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
        #: Idle spare processes ready for a job: pid -> whether it has warmed up.
        self.spares_ready: dict[int, bool] = {}

    # ---- Executor interface --------------------------------------------------------------------

    async def start(self, events: ExecutorEvents) -> None:
        """Open the job socket and start the warm parent; returns before the parent is warm."""
        self._events = events
        # A short directory: unix socket paths are limited to 108 bytes.
        self._tmpdir = tempfile.mkdtemp(
            prefix="pqr-", dir="/tmp" if os.path.isdir("/tmp") else None
        )
        self._socket_path = os.path.join(self._tmpdir, "jobs.sock")
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            reader = _JobReader(limit=_STREAM_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._on_connection, loop=loop)

        self._server = await loop.create_unix_server(protocol, path=self._socket_path)
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
        for job in [*self._jobs.values(), *self._exiting.values()]:
            for timer in (job.linger, job.hello_wait, job.kill_timer):
                if timer is not None:
                    timer.cancel()
            if job.pid is not None and job.exit is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGKILL)
            if job.writer is not None:
                job.writer.close()
        self._jobs.clear()
        self._exiting.clear()
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
        self._send_control({"t": "spares", "count": self.spares, "warm_up": self.warm_up})
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
            self.spares_ready.clear()
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
        job_id = frame.get("job_id", "")
        kind = frame["t"]
        if kind == "spare_ready":
            self.spares_ready[int(frame["pid"])] = bool(frame.get("warmed"))
            return
        if kind in ("spare_gone", "spawned"):
            self.spares_ready.pop(int(frame["pid"]), None)
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
            if job.cancel_requested:
                self._send_control({"t": "kill", "job_id": job.spec.job_id})
        elif kind == "exited":
            job.exit = frame
            # A process the job started in a session of its own may still hold the connection;
            # the warm parent has killed the job's group, so EOF is imminent, but never wait for
            # it forever: close it once it stays silent while the executor waits for data.
            self._arm_linger(job)
            self._maybe_finish(job)
        elif kind == "spawn_failed":
            job.lost_reason = f"the job's process could not be started: {frame.get('error')}"
            self._maybe_finish(job)

    def _give_up_hello(self, job: _Job) -> None:
        job.hello_given_up = True
        self._maybe_finish(job)

    def _arm_linger(self, job: _Job) -> None:
        if job.conn_open and job.linger is None and job.reader is not None:
            job.linger_mark = job.reader.fed
            job.linger = asyncio.get_running_loop().call_later(_LINGER, self._linger_check, job)

    def _linger_check(self, job: _Job) -> None:
        """Close the connection of an exited process only if it made no progress for ``_LINGER``.

        Progress is bytes arriving on the socket, or the executor still handling frames it read
        (a slow ``on_messages`` is the executor's delay, not the job's): frames that can still be
        read are never dropped.
        """
        job.linger = None
        if not job.conn_open or job.finishing or job.reader is None:
            return
        if job.busy or job.reader.fed != job.linger_mark:
            self._arm_linger(job)
            return
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
            job.reader = reader if isinstance(reader, _JobReader) else None
            if job.pid is None and isinstance(hello.get("pid"), int):
                job.pid = hello["pid"]  # the spawned control frame may come a moment later
            if job.hello_wait is not None:
                job.hello_wait.cancel()
            if job.exit is not None:
                self._arm_linger(job)
            await self._serve_job(job, reader)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, ValueError):
            pass
        except asyncio.IncompleteReadError:
            pass  # the process died mid-frame; its exit status tells the story
        finally:
            writer.close()
            if job is not None:
                job.conn_open = False
                if job.linger is not None:
                    job.linger.cancel()
                    job.linger = None
                self._maybe_finish(job)

    async def _serve_job(self, job: _Job, reader: asyncio.StreamReader) -> None:
        """Read the job's frames until EOF, handling everything already buffered at once."""
        max_frame = 2 * max(self.max_message_bytes, self.max_result_bytes) + 65536
        frames = FrameBuffer(max_frame)
        while True:
            data = await reader.read(_READ_CHUNK)
            if not data:
                if frames.pending:
                    raise asyncio.IncompleteReadError(b"", None)  # died mid-frame
                return
            job.busy = True
            try:
                batch = frames.feed(data)
            except FrameTooLarge as exc:
                job.error = f"The job's process sent an oversized frame and was stopped: {exc}\n"
                job.exc_type = "MessageTooLargeError"
                self._kill(job)
                return
            try:
                await self._handle_frames(job, batch)
            finally:
                job.busy = False

    async def _handle_frames(self, job: _Job, frames: list[Any]) -> None:
        job_id = job.spec.job_id
        messages: list[str] = []
        for frame in frames:
            if not isinstance(frame, dict):
                raise ValueError("frame is not a JSON object")
            kind = frame.get("t")
            if kind == "message":
                messages.append(str(frame.get("data")))
                continue
            if messages:
                await self._deliver(job, messages)
                messages = []
            if kind == "started":
                if not job.started:
                    job.started = True
                    await self._call("on_started", job_id)
            elif kind == "result":
                job.result = str(frame.get("data"))
                job.usage = _usage(frame)
            elif kind == "error" and frame.get("setup"):
                job.lost_reason = str(frame.get("traceback")).strip().rstrip(".")
            elif kind == "error":
                job.error = str(frame.get("traceback"))
                job.exc_type = str(frame.get("exc_type"))
                job.usage = _usage(frame)
        if messages:
            await self._deliver(job, messages)

    async def _deliver(self, job: _Job, messages: list[str]) -> None:
        if not job.cancel_requested:
            await self._call("on_messages", job.spec.job_id, messages)

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
        # The process's last word (result or error, sent after its logs were flushed and
        # detached) and EOF are enough: the reap is not waited for. A cancelled job is waited
        # for, so that it is gone when the scheduler hears of it.
        reported = not job.cancel_requested and (job.result is not None or job.error is not None)
        if job.exit is None and job.lost_reason is None and not reported:
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
        loop = asyncio.get_running_loop()
        if job.generation == self._generation and job.generation >= 0:
            # The job's CPU time tells the warm parent whether warming spares up pays off.
            release: dict[str, Any] = {"t": "release", "job_id": job.spec.job_id}
            if "cpu_seconds" in job.usage:
                release["cpu_seconds"] = job.usage["cpu_seconds"]
            self._send_control(release)
            if job.exit is None and (job.pid is not None or job.connected):
                # Its process said its last word: it gets _LINGER to exit, then it is killed.
                self._exiting[job.spec.job_id] = job
                job.kill_timer = loop.call_later(_LINGER, self._kill_lingering, job)
        task = loop.create_task(self._finish(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _kill_lingering(self, job: _Job) -> None:
        job.kill_timer = None
        if self._exiting.get(job.spec.job_id) is job:
            logger.warning("job %s: its process outlived its result; killing it", job.spec.job_id)
            self._send_control({"t": "kill", "job_id": job.spec.job_id})

    async def _finish(self, job: _Job) -> None:
        outcome = self._outcome(job)
        self._jobs.pop(job.spec.job_id, None)
        await self._call("on_finished", job.spec.job_id, outcome)

    def _outcome(self, job: _Job) -> Outcome:
        spec = job.spec
        details: dict[str, Any] = {"wall_seconds": round(time.monotonic() - job.submitted, 6)}
        if job.pid is not None:
            details["pid"] = job.pid
        if job.process is not None:
            details["process"] = job.process
        status = None
        # The process's own figures cover the job alone (a spare's warm-up is left out).
        details.update(job.usage)
        if job.exit is not None:
            status = int(job.exit["status"])
            for key in ("cpu_seconds", "max_rss_kb"):
                details.setdefault(key, job.exit.get(key))
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


def _usage(frame: dict[str, Any]) -> dict[str, Any]:
    """The usage figures a job process put in its last frame (numbers only)."""
    return {
        key: frame[key]
        for key in ("cpu_seconds", "max_rss_kb")
        if isinstance(frame.get(key), int | float) and not isinstance(frame.get(key), bool)
    }


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
