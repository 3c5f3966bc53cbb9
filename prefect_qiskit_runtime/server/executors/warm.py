"""The warm parent: imports Qiskit once, then keeps prepared processes ready to run jobs.

Started by :class:`~prefect_qiskit_runtime.server.executors.local.LocalExecutor` as
``python -m prefect_qiskit_runtime.server.executors.warm CONTROL_FD`` in a fresh interpreter (so it
inherits none of the service's sockets or database connections), it talks to the executor over the
control socket ``CONTROL_FD`` (frames of :mod:`.ipc`):

- in: ``spares`` (how many slots to keep spares for; ``warm_up``: ``auto``, ``always`` or
  ``never``, see :mod:`.spares`), ``run`` (start a job), ``kill`` (SIGKILL a job's process group),
  ``release`` (the executor has finished a job, with the CPU time the job used: its slot may get a
  spare again, even before the process is reaped), ``end_session`` (a dedicated session accepts
  no more jobs: its worker may go, see :mod:`.session_workers`), ``shutdown``;
- out: ``ready`` (imports done), ``spawned`` (with the kind of process the job got: a ``warm`` or
  ``cold`` spare, a ``fresh`` fork, or its session's worker, ``session``; and whether the process
  is ``kept`` for its session), ``spawn_failed``, ``exited`` (wait status and usage),
  ``spare_ready`` (an idle spare waits for a job, warmed up or not), ``spare_gone``.

This module is the warm parent's loop: control frames, handing a job to a process, reaping.
:mod:`.spares` forks the processes and decides on spares and warm-ups; :mod:`.child` is what a
forked process does (isolation, the job's log and limits, then
:func:`prefect_qiskit_runtime.server.runner.execute`).

When the control socket closes (the service is gone), the warm parent kills every process and exits.
"""

from __future__ import annotations

import contextlib
import gc
import os
import selectors
import shutil
import signal
import socket
import sys
import time
from typing import Any

from prefect_qiskit_runtime.server.executors.child import MAX_FILE_BYTES, vm_size_kb
from prefect_qiskit_runtime.server.executors.ipc import (
    LOG_FILE,
    FrameBuffer,
    encode_frame,
    send_frame,
)
from prefect_qiskit_runtime.server.executors.sandbox import job_read_roots
from prefect_qiskit_runtime.server.executors.session_workers import SessionWorkers
from prefect_qiskit_runtime.server.executors.spares import WARM_UP_MIN_JOB_CPU, Proc, SparePool

__all__ = ["LOG_FILE", "MAX_FILE_BYTES", "WARM_UP_MIN_JOB_CPU", "WarmParent", "main"]

#: After a failed fork, how long before the next spare is tried.
_FORK_RETRY_SECONDS = 1.0


class WarmParent:
    """The warm parent's event loop (single-threaded: it forks).

    Args:
        ctrl: The control socket to the executor.
        orphan_dir: The executor's socket directory, removed if the service vanishes.
    """

    def __init__(self, ctrl: socket.socket, orphan_dir: str | None = None) -> None:
        self.ctrl = ctrl
        self.orphan_dir = orphan_dir
        self.pids: dict[str, int] = {}  # job id -> pid
        self.frames = FrameBuffer()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.pool = SparePool(
            ctrl, self.selector, inherited=(self.selector, ctrl, self.wake_r, self.wake_w)
        )
        self.sessions = SessionWorkers(self.pool.close_pipes)

    def serve(self) -> None:
        """Preload, announce readiness, then handle control frames, child exits and spares."""
        self._init_process()
        self._preload()
        self.selector.register(self.ctrl, selectors.EVENT_READ, "ctrl")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        retry_at = 0.0  # after a failed fork, when to try the next spare
        while True:
            timeout: float | None = None
            spare = self.pool.wants_spare()
            if spare:
                # Spares are forked only when nothing else waits: a job never queues behind one.
                timeout = max(0.0, retry_at - time.monotonic())
            expiry = self.sessions.next_deadline()
            if expiry is not None:
                until = max(0.0, expiry - time.monotonic())
                timeout = until if timeout is None else min(timeout, until)
            events = self.selector.select(timeout)
            if expiry is not None:
                self.sessions.expire(time.monotonic())
            if not events and spare and time.monotonic() >= retry_at and not self.pool.add_spare():
                retry_at = time.monotonic() + _FORK_RETRY_SECONDS
            for key, _ in events:
                self._dispatch(key)

    def _init_process(self) -> None:
        # fds 0-2 are the spares' /dev/null and later the job's log: a pipe must never get them.
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                os.dup2(os.open(os.devnull, os.O_RDWR), fd)
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._exit(0))
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _preload(self) -> None:
        from prefect_qiskit_runtime.server import runner

        runner.preload()
        job_read_roots()  # inherited by every job that is confined
        gc.collect()
        # Keep the preloaded objects out of the children's garbage collections: fewer copied pages.
        gc.freeze()
        self.pool.baseline_kb = vm_size_kb()
        send_frame(
            self.ctrl, {"t": "ready", "pid": os.getpid(), "baseline_kb": self.pool.baseline_kb}
        )

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        if key.data == "wake":
            with contextlib.suppress(BlockingIOError):
                while self.wake_r.recv(4096):
                    pass
            self._reap()
        elif isinstance(key.data, Proc):
            self.pool.is_warming(key.data)
        elif key.data == "ctrl":
            data = self.ctrl.recv(1 << 20)
            if not data:
                # The service is gone without shutting us down: clean up its socket dir.
                if self.orphan_dir:
                    shutil.rmtree(self.orphan_dir, ignore_errors=True)
                self._exit(0)
            for frame in self.frames.feed(data):
                self._handle(frame)
        else:
            self.pool.write_pipe(key.fd)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "run":
            self._run(frame)
        elif kind == "kill":
            pid = self.pids.get(frame["job_id"])
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        elif kind == "release":
            self._release(frame["job_id"], frame.get("cpu_seconds"))
        elif kind == "end_session":
            self.sessions.end(str(frame["session_id"]))
        elif kind == "spares":
            self.pool.configure(int(frame.get("count", 0)), str(frame.get("warm_up", "auto")))
            self.sessions.configure(
                int(frame.get("sessions", 0)), float(frame.get("session_idle", 60.0))
            )
        elif kind == "shutdown":
            self._exit(0)

    def _run(self, frame: dict[str, Any]) -> None:
        job_id = frame["job_id"]
        session_id = frame.get("session_id")
        if session_id is not None:
            worker = self.sessions.idle_worker(session_id)
            if worker is not None and self.pool.assign(worker, job_id, _payload(frame, True)):
                self._spawned(job_id, worker, "session", kept=True)
                return
            if worker is not None:  # it died before it could take the job
                self.sessions.let_go(worker)
        for _ in range(3):
            proc = self.pool.take_spare()
            if proc is None:
                break
            keep = session_id is not None and self.sessions.may_adopt(session_id)
            if keep and session_id is not None:
                self.sessions.adopt(session_id, proc, frame["spec"].get("session_dir"))
            if not self.pool.assign(proc, job_id, _payload(frame, keep)):
                if keep:
                    self.sessions.let_go(proc)
                continue
            kind = "fresh" if proc.fresh else "warm" if proc.warmed else "cold"
            self._spawned(job_id, proc, kind, kept=keep)
            return
        send_frame(
            self.ctrl,
            {"t": "spawn_failed", "job_id": job_id, "error": "fork failed or the process died"},
        )

    def _spawned(self, job_id: str, proc: Proc, kind: str, *, kept: bool) -> None:
        self.pids[job_id] = proc.pid
        frame = {"t": "spawned", "job_id": job_id, "pid": proc.pid, "kind": kind, "kept": kept}
        send_frame(self.ctrl, frame)

    def _release(self, job_id: str, cpu_seconds: Any) -> None:
        """The executor finished a job: free its slot; a session worker waits for the next."""
        self.pool.release(job_id, cpu_seconds)
        pid = self.pids.get(job_id)
        proc = self.pool.procs.get(pid) if pid is not None else None
        if proc is not None and proc.session_id is not None and proc.job_id == job_id:
            # A later kill of this job must not reach the worker's next job.
            self.pids.pop(job_id, None)
            self.sessions.job_done(proc)

    def _reap(self) -> None:
        while self.pool.procs:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.pool.forget(pid)
            if proc is None:
                continue
            if proc.session_id is not None:
                self.sessions.forget(proc)
            # Anything the process left running in its session dies with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc.job_id is None:
                if proc.session_id is None:  # an idle session worker just leaves
                    self.pool.spare_died(proc, status)
                continue
            self.pids.pop(proc.job_id, None)
            send_frame(
                self.ctrl,
                {
                    "t": "exited",
                    "job_id": proc.job_id,
                    "pid": pid,
                    "status": status,
                    "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 6),
                    "max_rss_kb": usage.ru_maxrss,
                },
            )

    def _exit(self, code: int) -> None:
        for pid in list(self.pool.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(code)


def _payload(frame: dict[str, Any], worker: bool) -> bytes:
    """A ``run`` frame as its process reads it; ``worker``: the process stays for the session."""
    return encode_frame({**frame, "session_worker": worker})


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m prefect_qiskit_runtime.server.executors.warm CONTROL_FD [DIR]``.

    ``DIR`` is the executor's socket directory, removed if the service disappears without a
    shutdown.
    """
    args = sys.argv[1:] if argv is None else argv
    ctrl = socket.socket(fileno=int(args[0]))
    ctrl.setblocking(True)
    WarmParent(ctrl, args[1] if len(args) > 1 else None).serve()


if __name__ == "__main__":
    main()
