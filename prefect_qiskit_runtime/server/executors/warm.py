"""The warm parent: imports Qiskit once, then forks one isolated process per job.

Started by :class:`~prefect_qiskit_runtime.server.executors.local.LocalExecutor` as
``python -m prefect_qiskit_runtime.server.executors.warm CONTROL_FD`` in a fresh interpreter (so it
inherits none of the service's sockets or database connections), it talks to the executor over the
control socket ``CONTROL_FD`` (frames of :mod:`.ipc`):

- in: ``run`` (fork a job process), ``kill`` (SIGKILL a job's process group), ``shutdown``;
- out: ``ready`` (imports done), ``spawned``, ``spawn_failed``, ``exited`` (wait status and usage).

A job process starts its own session (so one ``killpg`` ends it and anything it started), dies with
the warm parent (``PR_SET_PDEATHSIG``), closes every inherited descriptor, connects to the
executor's unix socket, redirects fds 1 and 2 to ``job.log`` in its working directory (so output of
C extensions is caught too), applies its memory limit and calls
:func:`prefect_qiskit_runtime.server.runner.execute`.

When the control socket closes (the service is gone), the warm parent kills every job and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import resource
import selectors
import shutil
import signal
import socket
import sys
from typing import Any

from prefect_qiskit_runtime.server.executors.ipc import EXIT_SETUP_FAILED, FrameBuffer, send_frame

LOG_FILE = "job.log"
#: Largest file a job process may write (the log included); beyond it writes fail with EFBIG.
MAX_FILE_BYTES = 1 << 30

_PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not on glibc/musl
        return None


_LIBC = _libc()


def _vm_size_kb() -> int:
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1])
    return 0  # pragma: no cover


class WarmParent:
    """The warm parent's event loop (single-threaded: it forks)."""

    def __init__(self, ctrl: socket.socket, orphan_dir: str | None = None) -> None:
        self.ctrl = ctrl
        self.orphan_dir = orphan_dir
        self.children: dict[int, str] = {}  # pid -> job id
        self.pids: dict[str, int] = {}  # job id -> pid
        self.frames = FrameBuffer()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.baseline_kb = 0

    def serve(self) -> None:
        """Preload, announce readiness, then handle control frames and child exits until EOF."""
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._exit(0))
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        from prefect_qiskit_runtime.server import runner

        runner.preload()
        gc.collect()
        # Keep the preloaded objects out of the children's garbage collections: fewer copied pages.
        gc.freeze()
        self.baseline_kb = _vm_size_kb()
        send_frame(self.ctrl, {"t": "ready", "pid": os.getpid(), "baseline_kb": self.baseline_kb})

        self.selector.register(self.ctrl, selectors.EVENT_READ, "ctrl")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        while True:
            for key, _ in self.selector.select():
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while self.wake_r.recv(4096):
                            pass
                    self._reap()
                else:
                    data = self.ctrl.recv(1 << 20)
                    if not data:
                        # The service is gone without shutting us down: clean up its socket dir.
                        if self.orphan_dir:
                            shutil.rmtree(self.orphan_dir, ignore_errors=True)
                        self._exit(0)
                    for frame in self.frames.feed(data):
                        self._handle(frame)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("t")
        if kind == "run":
            self._spawn(frame)
        elif kind == "kill":
            pid = self.pids.get(frame["job_id"])
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        elif kind == "shutdown":
            self._exit(0)

    def _spawn(self, frame: dict[str, Any]) -> None:
        job_id = frame["job_id"]
        try:
            pid = os.fork()
        except OSError as exc:
            send_frame(self.ctrl, {"t": "spawn_failed", "job_id": job_id, "error": str(exc)})
            return
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            code = EXIT_SETUP_FAILED
            try:
                code = self._child(frame)
            finally:
                os._exit(code)
        self.children[pid] = job_id
        self.pids[job_id] = pid
        send_frame(self.ctrl, {"t": "spawned", "job_id": job_id, "pid": pid})

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_id = self.children.pop(pid, None)
            if job_id is None:
                continue
            self.pids.pop(job_id, None)
            # Anything the job left running in its session dies with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            send_frame(
                self.ctrl,
                {
                    "t": "exited",
                    "job_id": job_id,
                    "pid": pid,
                    "status": status,
                    "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 6),
                    "max_rss_kb": usage.ru_maxrss,
                },
            )

    def _exit(self, code: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(code)

    # ---- in the job process -------------------------------------------------------------------

    def _child(self, frame: dict[str, Any]) -> int:  # pragma: no cover - child process
        spec: dict[str, Any] = frame["spec"]
        parent = os.getppid()
        os.setsid()
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the warm parent died before prctl took effect
            return EXIT_SETUP_FAILED
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Close the parent's descriptors through their objects first, so that no Python object
        # later closes a number the job has reused; then everything else above stderr.
        self.selector.close()
        for sock in (self.ctrl, self.wake_r, self.wake_w):
            sock.close()
        os.closerange(3, _max_fd())

        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(frame["socket_path"])
        hello = {"t": "hello", "job_id": frame["job_id"], "token": frame["token"]}
        send_frame(conn, hello)
        try:
            _prepare_process(spec)
        except BaseException as exc:
            send_frame(
                conn,
                {
                    "t": "error",
                    "traceback": f"the job's process could not be prepared: {exc!r}",
                    "exc_type": type(exc).__name__,
                    "setup": True,
                },
            )
            return EXIT_SETUP_FAILED
        send_frame(conn, {"t": "started"})

        from prefect_qiskit_runtime.server import runner

        limit_mb = spec.get("memory_limit_mb")
        if limit_mb:
            limit = (self.baseline_kb * 1024) + int(limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        ok = runner.execute(spec, lambda f: send_frame(conn, f))
        _flush_c_stdio()
        conn.close()
        return 0 if ok else 1


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _prepare_process(spec: dict[str, Any]) -> None:  # pragma: no cover - child process
    """Working directory, log file on fds 1 and 2, stdin from /dev/null, limits, fresh RNG state."""
    os.chdir(spec["workdir"])
    log_fd = os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    # One unbuffered-enough text stream per fd: lines from print() and from logging interleave in
    # the order they were written; the C library's own buffers are flushed before exit.
    sys.stdout = io.TextIOWrapper(
        open(1, "wb", closefd=False),  # noqa: SIM115 - lives as long as the process
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False),  # noqa: SIM115 - lives as long as the process
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's stdin for its lifetime
    sys.argv = ["program.py"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    # Exceeding RLIMIT_FSIZE then fails the write (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import numpy as np

    # Forked processes share the parent's global NumPy RNG state; Python's random reseeds itself.
    np.random.seed()


def _flush_c_stdio() -> None:  # pragma: no cover - child process
    """Flush C stdio buffers (printf from extensions): ``os._exit`` skips it."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if _LIBC is not None:
        _LIBC.fflush(None)


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
