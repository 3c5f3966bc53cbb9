"""The local executor's jobs: what it knows of each, and the connection each one reports on.

Jobs report to a unix socket served on the service's event loop; each connection authenticates
with the job's one-time token (``hello``). Every frame already read is handled before the next
read, and consecutive interim messages go to one ``on_messages`` call. A connection is closed by
the executor only when it is stuck: its process has exited and nothing arrived on it for
``LINGER`` while the executor was waiting for data (a process the job started in a session of its
own may hold it open).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect_qiskit_runtime.server.executors import calls
from prefect_qiskit_runtime.server.executors.base import JobSpec
from prefect_qiskit_runtime.server.executors.ipc import FrameBuffer, FrameTooLarge, read_frame

__all__ = ["LINGER", "JobConnections", "JobReader", "LocalJob", "usage_of"]

#: How long a job's connection may stay silent after its process was reaped (a process the job
#: started in a session of its own may hold it) while the executor waits for data; and how long a
#: process may outlive the result it reported.
LINGER = 1.0
_HELLO_TIMEOUT = 30.0
#: Bytes a job connection buffers before it stops reading from the socket (the job then blocks in
#: ``publish`` until the executor has caught up).
_STREAM_LIMIT = 256 * 1024
#: Most bytes taken from a job connection's buffer at once.
_READ_CHUNK = 1 << 20


@dataclass(eq=False)
class LocalJob:
    """Everything the local executor knows of one submitted job, until it has finished."""

    spec: JobSpec
    token: str
    submitted: float = field(default_factory=time.monotonic)
    generation: int = -1  # which warm parent got it; -1 = not handed over yet
    attempts: int = 0
    pid: int | None = None
    process: str | None = None  # "warm" or "cold" spare, "fresh" fork, or "session" worker
    kept: bool = False  # its process stays for its session's next job
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
    reader: JobReader | None = None
    busy: bool = False  # frames read and being handled (the executor's side is slow, not the job)
    linger: asyncio.TimerHandle | None = None
    linger_mark: int = -1
    hello_wait: asyncio.TimerHandle | None = None
    hello_given_up: bool = False
    kill_timer: asyncio.TimerHandle | None = None
    # Its channel (:mod:`.calls`): unanswered calls by number, frames waiting for the connection.
    calls: dict[int, asyncio.Future[str]] = field(default_factory=dict)
    call_seq: int = 0
    outbox: list[bytes] = field(default_factory=list)
    ended_calls: bool = False


class JobReader(asyncio.StreamReader):
    """A stream reader that counts the bytes it was given: progress of a job's connection."""

    fed = 0

    def feed_data(self, data: bytes) -> None:  # type: ignore[override]  # typeshed is wider
        self.fed += len(data)
        super().feed_data(data)


def usage_of(frame: dict[str, Any]) -> dict[str, Any]:
    """The usage figures a job process put in its last frame (numbers only)."""
    return {
        key: frame[key]
        for key in ("cpu_seconds", "max_rss_kb")
        if isinstance(frame.get(key), int | float) and not isinstance(frame.get(key), bool)
    }


class JobConnections:
    """The unix socket job processes report to, and what is read from each job's connection.

    Args:
        jobs: The executor's running jobs by id (only read here).
        max_frame: The largest frame a job's process may send.
        notify: Awaits an :class:`~.base.ExecutorEvents` callback by name, with its arguments.
        kill: Kills a job's processes (it sent an oversized frame).
        finish: Finishes a job if what is known of it now suffices; called whenever that changes.
    """

    def __init__(
        self,
        jobs: Mapping[str, LocalJob],
        *,
        max_frame: int,
        notify: Callable[..., Awaitable[None]],
        kill: Callable[[LocalJob], None],
        finish: Callable[[LocalJob], None],
    ) -> None:
        self._jobs = jobs
        self._max_frame = max_frame
        self._notify = notify
        self._kill = kill
        self._finish = finish
        self._server: asyncio.AbstractServer | None = None

    async def open(self, path: str) -> None:
        """Listen on the unix socket ``path`` (readable by this user alone)."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            reader = JobReader(limit=_STREAM_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, self._on_connection, loop=loop)

        self._server = await loop.create_unix_server(protocol, path=path)
        os.chmod(path, 0o600)

    async def close(self) -> None:
        """Stop listening (waiting at most 2 seconds for the server to close)."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def arm_linger(self, job: LocalJob) -> None:
        """Watch an exited job's open connection: close it after ``LINGER`` without progress."""
        if job.conn_open and job.linger is None and job.reader is not None:
            job.linger_mark = job.reader.fed
            job.linger = asyncio.get_running_loop().call_later(LINGER, self._linger_check, job)

    def _linger_check(self, job: LocalJob) -> None:
        """Close the connection of an exited process only if it made no progress for ``LINGER``.

        Progress is bytes arriving on the socket, or the executor still handling frames it read
        (a slow ``on_messages`` is the executor's delay, not the job's): frames that can still be
        read are never dropped.
        """
        job.linger = None
        if not job.conn_open or job.finishing or job.reader is None:
            return
        if job.busy or job.reader.fed != job.linger_mark:
            self.arm_linger(job)
            return
        if job.writer is not None:
            job.writer.close()
        job.conn_open = False
        self._finish(job)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        job: LocalJob | None = None
        try:
            job = await self._authenticate(reader)
            if job is None:
                return
            job.connected = job.conn_open = True
            job.writer = writer
            job.reader = reader if isinstance(reader, JobReader) else None
            if job.hello_wait is not None:
                job.hello_wait.cancel()
            calls.flush_outbox(job)
            if job.exit is not None:
                self.arm_linger(job)
            await self._serve_job(job, reader)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, ValueError):
            pass
        except asyncio.IncompleteReadError:
            pass  # the process died mid-frame; its exit status tells the story
        finally:
            writer.close()
            if job is not None:
                job.conn_open = False
                calls.fail_calls(job, "the job's process ended before it answered")
                if job.linger is not None:
                    job.linger.cancel()
                    job.linger = None
                self._finish(job)

    async def _authenticate(self, reader: asyncio.StreamReader) -> LocalJob | None:
        """The job a connection's ``hello`` names with its token, if it may connect now."""
        hello = await asyncio.wait_for(read_frame(reader, 4096), _HELLO_TIMEOUT)
        if not hello or hello.get("t") != "hello":
            return None
        job = self._jobs.get(str(hello.get("job_id")))
        if (
            job is None
            or job.connected
            or job.finishing
            or not secrets.compare_digest(str(hello.get("token", "")), job.token)
        ):
            return None
        if job.pid is None and isinstance(hello.get("pid"), int):
            job.pid = hello["pid"]  # the spawned control frame may come a moment later
        return job

    async def _serve_job(self, job: LocalJob, reader: asyncio.StreamReader) -> None:
        """Read the job's frames until EOF, handling everything already buffered at once."""
        frames = FrameBuffer(self._max_frame)
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

    async def _handle_frames(self, job: LocalJob, frames: list[Any]) -> None:
        job_id = job.spec.job_id
        messages: list[str] = []
        for frame in frames:
            if not isinstance(frame, dict):
                raise ValueError("frame is not a JSON object")
            kind = frame.get("t")
            if kind == "message":
                messages.append(str(frame.get("data")))
                continue
            if kind == "reply":
                calls.settle_reply(job, frame)
                continue
            if messages:
                await self._deliver(job, messages)
                messages = []
            if kind == "started":
                if not job.started:
                    job.started = True
                    await self._notify("on_started", job_id)
            elif kind == "result":
                job.result = str(frame.get("data"))
                job.usage = usage_of(frame)
            elif kind == "error" and frame.get("setup"):
                job.lost_reason = str(frame.get("traceback")).strip().rstrip(".")
            elif kind == "error":
                job.error = str(frame.get("traceback"))
                job.exc_type = str(frame.get("exc_type"))
                job.usage = usage_of(frame)
        if messages:
            await self._deliver(job, messages)

    async def _deliver(self, job: LocalJob, messages: list[str]) -> None:
        if not job.cancel_requested:
            await self._notify("on_messages", job.spec.job_id, messages)
