"""The warm parent's session workers: one process kept for each dedicated session.

A dedicated session's first job takes a spare (or a fresh fork) as any job does; the warm parent
then keeps that process's job pipe open instead of closing it after the job's frame, and the
process, once the job is over, waits on the pipe for the next frame (:mod:`.child`). The
session's next job goes to that worker if it is idle; a job that finds it busy (two jobs of one
session at once) runs in a process of its own, as outside a session. Everything else is the one
job path: the job's connection, hello and token, its working directory and log, its outcome.

A worker is let go (its pipe closed: it reads EOF and exits) when its session ends (the service
was told the session accepts no more jobs, and the worker's job is over), after ``idle_timeout``
seconds without a job, or to make room: at most ``limit`` workers are kept, and a new session's
worker replaces the one idle the longest. A worker that dies (its job was cancelled and killed,
or crashed) is forgotten; the session's next job makes a new one. Cancel still kills the job's
process group, which for a session job is the worker.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import time
from collections.abc import Callable

from prefect_qiskit_runtime.server.executors.spares import Proc

__all__ = ["SessionWorkers"]

#: Ended sessions remembered, so that a late job of one does not get a worker kept for it.
_ENDED_MEMORY = 4096


class SessionWorkers:
    """The session workers of one warm parent (single-threaded, owned by its loop).

    Args:
        retire: Closes a process's job pipe (the process then exits).
    """

    def __init__(self, retire: Callable[[Proc], None]) -> None:
        self._retire = retire
        self.workers: dict[str, Proc] = {}  # session id -> its worker
        self.limit = 0
        self.idle_timeout = 60.0
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()

    def configure(self, limit: int, idle_timeout: float) -> None:
        """Keep at most ``limit`` workers, each for at most ``idle_timeout`` seconds idle."""
        self.limit = max(0, limit)
        self.idle_timeout = idle_timeout
        while len(self.workers) > self.limit and self._retire_oldest_idle():
            pass

    def idle_worker(self, session_id: str) -> Proc | None:
        """The session's worker if it exists and is waiting for a job."""
        proc = self.workers.get(session_id)
        if proc is None or proc.job_id is not None or proc.wfd is None:
            return None
        return proc

    def may_adopt(self, session_id: str) -> bool:
        """Whether a process taking a job of ``session_id`` should stay as its worker."""
        if session_id in self.workers or session_id in self._ended:
            return False
        if len(self.workers) < self.limit:
            return True
        return self._retire_oldest_idle()

    def adopt(self, session_id: str, proc: Proc, session_dir: str | None) -> None:
        """Keep ``proc`` (given a job of the session just now) as the session's worker."""
        proc.session_id = session_id
        proc.session_dir = session_dir
        proc.idle_since = None
        self.workers[session_id] = proc

    def job_done(self, proc: Proc) -> None:
        """The executor finished the worker's job: it is idle, or let go if its session ended."""
        proc.job_id = None
        proc.idle_since = time.monotonic()
        if proc.session_id in self._ended:
            self.let_go(proc)

    def end(self, session_id: str) -> None:
        """The session accepts no more jobs: its worker goes once idle."""
        self._ended[session_id] = None
        while len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)
        proc = self.workers.get(session_id)
        if proc is not None and proc.job_id is None:
            self.let_go(proc)

    def let_go(self, proc: Proc) -> None:
        """Stop keeping ``proc``: close its pipe; it exits (and is reaped) on its own."""
        if proc.session_id is not None and self.workers.get(proc.session_id) is proc:
            del self.workers[proc.session_id]
        self._retire(proc)

    def forget(self, proc: Proc) -> None:
        """A worker was reaped: drop it, and its session's directory once no job is left in it."""
        if proc.session_id is not None and self.workers.get(proc.session_id) is proc:
            del self.workers[proc.session_id]
        if proc.session_dir:
            _remove_if_unused(proc.session_dir)

    def next_deadline(self) -> float | None:
        """When the next idle worker times out (``time.monotonic``), ``None`` without one."""
        idle = [p.idle_since for p in self.workers.values() if p.idle_since is not None]
        return min(idle) + self.idle_timeout if idle else None

    def expire(self, now: float) -> None:
        """Let go every worker idle for ``idle_timeout`` or longer."""
        for proc in list(self.workers.values()):
            idle = proc.idle_since
            if proc.job_id is None and idle is not None and now - idle >= self.idle_timeout:
                self.let_go(proc)

    def _retire_oldest_idle(self) -> bool:
        idle = [p for p in self.workers.values() if p.job_id is None and p.idle_since is not None]
        if not idle:
            return False
        self.let_go(min(idle, key=lambda p: p.idle_since or 0.0))
        return True


def _remove_if_unused(session_dir: str) -> None:
    """Remove a session's directory when nothing but its ``tmp`` is left (no job in it)."""
    with contextlib.suppress(OSError):
        if all(name == "tmp" for name in os.listdir(session_dir)):
            shutil.rmtree(session_dir, ignore_errors=True)
