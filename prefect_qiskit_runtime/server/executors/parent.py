"""The local executor's side of the warm parent: starting it, its control channel, restarts.

The warm parent (:mod:`.warm`) is started with ``subprocess.Popen`` of a clean interpreter
(``close_fds``, an environment without secrets), so neither it nor any job process inherits the
service's sockets or database connections. It gets one end of a socketpair as its control channel
(frames of :mod:`.ipc`). When it dies it is started again, at once after a parent that had become
ready and with a growing delay after one that had not; each start is a new *generation*, so the
executor can tell which jobs died with which parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from typing import Any

from prefect_qiskit_runtime.server.executors.ipc import encode_frame, read_frame

__all__ = ["WARM_MODULE", "WarmParentSupervisor"]

logger = logging.getLogger(__name__)

WARM_MODULE = "prefect_qiskit_runtime.server.executors.warm"
_CONTROL_MAX = 1 << 20
#: Environment variables never passed to the warm parent (and so to programs).
_SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "CREDENTIAL", "DATABASE_URL")
#: Starts in a row whose warm parent never became ready before the queued jobs are given up.
_START_FAILURES_LIMIT = 3


class WarmParentSupervisor:
    """Keeps one warm parent running and carries its control channel.

    Args:
        python: The interpreter that runs the warm parent.
        env: Environment of the warm parent (default: this process's, without secrets).
        on_connected: Called when a new warm parent's control channel is open (before it is
            ready): the place to send it its configuration.
        on_frame: Called with every control frame about jobs, and with ``ready`` once
            :attr:`parent_info` and :attr:`ready` are set.
        on_lost: Called with the generation of a warm parent that is gone, after it was reaped.
        on_failing: Called after every failed start once several in a row have failed.
    """

    def __init__(
        self,
        *,
        python: str,
        env: dict[str, str] | None,
        on_connected: Callable[[], None],
        on_frame: Callable[[dict[str, Any]], None],
        on_lost: Callable[[int], None],
        on_failing: Callable[[], None],
    ) -> None:
        self._python = python
        self._env = env
        self._on_connected = on_connected
        self._on_frame = on_frame
        self._on_lost = on_lost
        self._on_failing = on_failing
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: asyncio.StreamWriter | None = None
        #: Set when the service shuts down: no more restarts, and the parent's exit is expected.
        self.closing = False
        #: Which warm parent is (or was last) running; the first is 1.
        self.generation = 0
        #: Set while the current warm parent has imported Qiskit and accepts jobs.
        self.ready = asyncio.Event()
        #: Facts about the current warm parent (pid, baseline address space) once it is ready.
        self.parent_info: dict[str, Any] = {}
        #: Idle spare processes ready for a job: pid -> whether it has warmed up.
        self.spares_ready: dict[int, bool] = {}

    @property
    def accepting(self) -> bool:
        """Whether a job handed over now goes straight to a ready warm parent."""
        return self.ready.is_set() and self._ctrl is not None

    def send(self, frame: dict[str, Any]) -> None:
        """Write a control frame to the current warm parent (dropped if there is none)."""
        if self._ctrl is not None and not self._ctrl.is_closing():
            self._ctrl.write(encode_frame(frame))

    async def supervise(self, directory: str) -> None:
        """Run warm parents one after the other until :attr:`closing` (run it as a task).

        Args:
            directory: The executor's socket directory: the parent's working directory, removed
                by the parent if the service vanishes without a shutdown.
        """
        failures = 0
        while not self.closing:
            became_ready = await self._run_parent(directory)
            if self.closing:
                return
            failures = 0 if became_ready else failures + 1
            if failures >= _START_FAILURES_LIMIT:
                self._on_failing()
            await asyncio.sleep(min(0.2 * 2**failures, 30.0) if failures else 0)

    async def stop(self) -> None:
        """Ask the warm parent to shut down; kill it if it has not exited within 2 seconds."""
        self.send({"t": "shutdown"})
        proc = self._proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), 2)
        except (asyncio.TimeoutError, TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.to_thread(proc.wait)

    def _environment(self) -> dict[str, str]:
        env = dict(self._env if self._env is not None else os.environ)
        if self._env is None:
            env = {k: v for k, v in env.items() if not any(m in k.upper() for m in _SECRET_MARKERS)}
        # glibc reserves 64 MiB of address space per malloc arena and thread; with RLIMIT_AS that
        # would count against the job's memory limit.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        return env

    async def _run_parent(self, directory: str) -> bool:
        """Start one warm parent and serve its control channel until it dies.

        Returns:
            Whether it became ready.
        """
        self.generation += 1
        generation = self.generation
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [self._python, "-m", WARM_MODULE, str(theirs.fileno()), directory],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                cwd=directory,
                env=self._environment(),
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
        self._on_connected()
        try:
            return await self._read_control(reader)
        finally:
            await self._parent_gone(writer, generation)

    async def _read_control(self, reader: asyncio.StreamReader) -> bool:
        """Handle the warm parent's frames until its channel closes; whether it became ready."""
        became_ready = False
        try:
            while True:
                frame = await read_frame(reader, _CONTROL_MAX)
                if frame is None:
                    break
                kind = frame["t"]
                if kind == "ready":
                    became_ready = True
                    self.parent_info = {k: v for k, v in frame.items() if k != "t"}
                    self.ready.set()
                elif kind == "spare_ready":
                    self.spares_ready[int(frame["pid"])] = bool(frame.get("warmed"))
                    continue
                elif kind in ("spare_gone", "spawned"):
                    self.spares_ready.pop(int(frame["pid"]), None)
                self._on_frame(frame)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            logger.exception("Control channel of the warm parent broke")
        return became_ready

    async def _parent_gone(self, writer: asyncio.StreamWriter, generation: int) -> None:
        """Close the channel, make sure the parent is dead and reaped, then tell the executor."""
        self.ready.clear()
        self._ctrl = None
        self.spares_ready.clear()
        writer.close()
        proc = self._proc
        self._proc = None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await asyncio.to_thread(proc.wait)
            if not self.closing:
                logger.warning("The warm parent exited (%s); restarting it", _describe(code))
        self._on_lost(generation)


def _describe(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
