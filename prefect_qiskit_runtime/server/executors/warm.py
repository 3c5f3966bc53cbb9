"""The warm parent: imports Qiskit once, then keeps prepared processes ready to run jobs.

Started by :class:`~prefect_qiskit_runtime.server.executors.local.LocalExecutor` as
``python -m prefect_qiskit_runtime.server.executors.warm CONTROL_FD`` in a fresh interpreter (so it
inherits none of the service's sockets or database connections), it talks to the executor over the
control socket ``CONTROL_FD`` (frames of :mod:`.ipc`):

- in: ``spares`` (how many slots to keep spares for; ``warm_up``: ``auto``, ``always`` or
  ``never``, see below), ``run`` (start a job), ``kill`` (SIGKILL a job's process group),
  ``release`` (the executor has finished a job, with the CPU time the job used: its slot may get a
  spare again, even before the process is reaped), ``shutdown``;
- out: ``ready`` (imports done), ``spawned`` (with the kind of process the job got: a ``warm`` or
  ``cold`` spare, or a ``fresh`` fork), ``spawn_failed``, ``exited`` (wait status and usage),
  ``spare_ready`` (an idle spare waits for a job, warmed up or not), ``spare_gone``.

**Spares.** The warm parent keeps one spare process per free slot (``spares`` minus the jobs that
hold a slot), and one even when every slot is busy (the next job arrives the moment a job ends,
before a spare for the freed slot could be forked). It forks them only when it has nothing else
to do. A spare starts its own session (so one ``killpg`` ends it and anything it starts), dies
with the warm parent (``PR_SET_PDEATHSIG``), closes every inherited descriptor except its own two
pipes (job in, state out), puts ``/dev/null`` on fds 0-2, may run
:func:`~prefect_qiskit_runtime.server.runner.warm_up` (no user code; it writes ``w`` to its state
pipe first and closes the pipe when done), and blocks on its job pipe. ``run`` hands the job's
frame to the oldest spare that is not in the middle of its warm-up (the write end is closed after
it, so the spare reads to EOF); when every spare is warming up, or none is left, a fresh process
is forked for the job, so a job never waits for a warm-up. Only then does the process take on the
job: it connects to the executor's unix socket, redirects fds 1 and 2 to ``job.log`` in the
job's working directory (so output of C extensions is caught too), applies the job's memory limit
and calls :func:`prefect_qiskit_runtime.server.runner.execute`. A spare whose job pipe closes
without a job exits.

**Warm-up policy.** The warm-up costs a spare about 16 ms of CPU and saves a job that uses Aer and
the transpiler 12-15 ms (an estimator job runs in about 6 ms instead of 18-20, a sampler job in
about 10 instead of 21); a trivial job gains nothing from it. A new spare therefore warms up only on
a free core (the jobs running and the spares warming up are fewer than the cores this process may
use: under full load the warm-up would take CPU from jobs) and, with ``warm_up="auto"``, only while
the jobs of late used enough CPU to be of the kind that gains: a moving average of at least
``WARM_UP_MIN_JOB_CPU`` (even warmed up, an Aer job uses about 6 ms, a trivial one under 1 ms). A
stream of trivial jobs keeps its CPU for itself; a hybrid loop of estimator jobs gets warm
processes. ``always`` skips the CPU-time test, ``never`` turns warm-ups off.

When the control socket closes (the service is gone), the warm parent kills every process and exits.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import gc
import io
import json
import os
import resource
import select
import selectors
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from prefect_qiskit_runtime.server.executors.ipc import EXIT_SETUP_FAILED, FrameBuffer, send_frame

LOG_FILE = "job.log"
#: Largest file a job process may write (the log included); beyond it writes fail with EFBIG.
MAX_FILE_BYTES = 1 << 30
#: Spares that die before they get a job, in a row, before warm-ups (then spares) are given up.
_SPARE_FAILURES_LIMIT = 3
#: New spares warm up while the moving average of the jobs' CPU seconds is at least this.
WARM_UP_MIN_JOB_CPU = 0.005
#: Weight of the latest job in that moving average.
_CPU_AVERAGE_WEIGHT = 0.3

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


@dataclass(eq=False)
class _Proc:
    """A process forked by the warm parent: an idle spare until it is given a job."""

    pid: int
    wfd: int | None  # the write end of its job pipe, until the job's frame is written
    sfd: int | None  # the read end of its state pipe: b"w" when a warm-up starts, EOF when done
    job_id: str | None = None
    warm_up: bool = False  # forked to warm up
    warming: bool = False
    warmed: bool = False
    fresh: bool = False  # forked for a job that found no spare ready


class WarmParent:
    """The warm parent's event loop (single-threaded: it forks)."""

    def __init__(self, ctrl: socket.socket, orphan_dir: str | None = None) -> None:
        self.ctrl = ctrl
        self.orphan_dir = orphan_dir
        self.procs: dict[int, _Proc] = {}  # pid -> every child not reaped yet
        self.pids: dict[str, int] = {}  # job id -> pid
        self.spares: collections.deque[_Proc] = collections.deque()  # idle, oldest first
        self.busy: set[str] = set()  # jobs that hold a slot
        self.slots = 0  # spares wanted when no job holds a slot
        self.warm_up = "auto"
        # Starts as if the jobs were heavy: the first spares warm up while the service is idle.
        self.job_cpu = WARM_UP_MIN_JOB_CPU
        self.spare_failures = 0
        self.outbox: dict[int, tuple[_Proc, bytearray]] = {}  # pipe fd -> job frame left to write
        self.frames = FrameBuffer()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.baseline_kb = 0
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1

    def serve(self) -> None:
        """Preload, announce readiness, then handle control frames, child exits and spares."""
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

        from prefect_qiskit_runtime.server import runner

        runner.preload()
        gc.collect()
        # Keep the preloaded objects out of the children's garbage collections: fewer copied pages.
        gc.freeze()
        self.baseline_kb = _vm_size_kb()
        send_frame(self.ctrl, {"t": "ready", "pid": os.getpid(), "baseline_kb": self.baseline_kb})

        self.selector.register(self.ctrl, selectors.EVENT_READ, "ctrl")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        retry_at = 0.0  # after a failed fork, when to try the next spare
        while True:
            timeout: float | None = None
            free = self.slots - len(self.busy)
            # One spare per free slot, and one even when every slot is busy: the next job comes
            # the moment a job ends, before a spare for the freed slot could be forked.
            if len(self.spares) < max(free, min(self.slots, 1)):
                # Spares are forked only when nothing else waits: a job never queues behind one.
                timeout = max(0.0, retry_at - time.monotonic())
            events = self.selector.select(timeout)
            if not events and timeout is not None:
                spare = self._fork(warm_up=self._should_warm_up())
                if spare is not None:
                    self.spares.append(spare)
                else:
                    retry_at = time.monotonic() + 1.0
            for key, _ in events:
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while self.wake_r.recv(4096):
                            pass
                    self._reap()
                elif isinstance(key.data, _Proc):
                    self._is_warming(key.data)
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
                    self._write_pipe(key.fd)

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
            self.busy.discard(frame["job_id"])
            cpu = frame.get("cpu_seconds")
            if isinstance(cpu, int | float):
                self.job_cpu += _CPU_AVERAGE_WEIGHT * (float(cpu) - self.job_cpu)
        elif kind == "spares":
            self.slots = max(0, int(frame.get("count", 0)))
            self.warm_up = str(frame.get("warm_up", "auto"))
            while len(self.spares) > self.slots:
                self._close_pipes(self.spares.pop())  # EOF without a job: the spare exits
        elif kind == "shutdown":
            self._exit(0)

    def _should_warm_up(self) -> bool:
        if self.warm_up == "never":
            return False
        if self.warm_up == "auto" and self.job_cpu < WARM_UP_MIN_JOB_CPU:
            return False
        # Only on a core that is free: not taken by a job, nor by another spare's warm-up.
        warming = sum(1 for proc in self.spares if proc.warm_up and proc.sfd is not None)
        return len(self.busy) + warming < self.cores

    # ---- processes -----------------------------------------------------------------------------

    def _fork(self, warm_up: bool) -> _Proc | None:
        try:
            rfd, wfd = os.pipe()
        except OSError:
            return None
        try:
            state_r, state_w = os.pipe()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            return None
        try:
            pid = os.fork()
        except OSError:
            for fd in (rfd, wfd, state_r, state_w):
                os.close(fd)
            return None
        if pid == 0:  # pragma: no cover - runs in the child, which never returns
            code = EXIT_SETUP_FAILED
            try:
                code = self._child(rfd, state_w, warm_up)
            finally:
                os._exit(code)
        os.close(rfd)
        os.close(state_w)
        os.set_blocking(wfd, False)
        os.set_blocking(state_r, False)
        proc = _Proc(pid, wfd, state_r, warm_up=warm_up)
        self.procs[pid] = proc
        self.selector.register(state_r, selectors.EVENT_READ, proc)
        return proc

    def _is_warming(self, proc: _Proc) -> bool:
        """Whether a spare is in the middle of its warm-up (from its state pipe, never blocking)."""
        while proc.sfd is not None:
            try:
                data = os.read(proc.sfd, 64)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:  # warmed up, or never going to: it waits for a job
                self._close_state(proc)
                proc.warming = False
                if proc.job_id is None and proc.pid in self.procs:
                    send_frame(
                        self.ctrl, {"t": "spare_ready", "pid": proc.pid, "warmed": proc.warmed}
                    )
            else:
                proc.warming = proc.warmed = True
        return proc.warming

    def _close_state(self, proc: _Proc) -> None:
        if proc.sfd is not None:
            self.selector.unregister(proc.sfd)
            os.close(proc.sfd)
            proc.sfd = None

    def _take_spare(self) -> _Proc | None:
        for proc in self.spares:
            if not self._is_warming(proc):
                self.spares.remove(proc)
                return proc
        # Only spares that are warming up (they stay for later jobs), or none: a fresh process.
        fresh = self._fork(warm_up=False)
        if fresh is not None:
            fresh.fresh = True
        return fresh

    def _run(self, frame: dict[str, Any]) -> None:
        job_id = frame["job_id"]
        payload = json.dumps(frame, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        for _ in range(3):
            proc = self._take_spare()
            if proc is None:
                break
            assert proc.wfd is not None
            try:
                written = os.write(proc.wfd, payload)
            except BlockingIOError:
                written = 0  # the pipe is full: the rest goes out as the process reads it
            except OSError:
                # It died before it could take the job; it is reaped as an idle spare.
                self._close_pipes(proc)
                continue
            proc.job_id = job_id
            self.pids[job_id] = proc.pid
            self.busy.add(job_id)
            self.spare_failures = 0
            self._close_state(proc)
            if written < len(payload):
                self.outbox[proc.wfd] = (proc, bytearray(payload[written:]))
                self.selector.register(proc.wfd, selectors.EVENT_WRITE, "pipe")
            else:
                self._close_pipes(proc)
            kind = "fresh" if proc.fresh else "warm" if proc.warmed else "cold"
            send_frame(self.ctrl, {"t": "spawned", "job_id": job_id, "pid": proc.pid, "kind": kind})
            return
        send_frame(
            self.ctrl,
            {"t": "spawn_failed", "job_id": job_id, "error": "fork failed or the process died"},
        )

    def _write_pipe(self, fd: int) -> None:
        proc, rest = self.outbox[fd]
        try:
            written = os.write(fd, rest)
        except BlockingIOError:
            return
        except OSError:
            written = len(rest)  # the process is gone: its exit tells the executor
        del rest[:written]
        if not rest:
            self._close_pipes(proc)

    def _close_pipes(self, proc: _Proc) -> None:
        self._close_state(proc)
        if proc.wfd is None:
            return
        if self.outbox.pop(proc.wfd, None) is not None:
            self.selector.unregister(proc.wfd)
        os.close(proc.wfd)
        proc.wfd = None

    def _reap(self) -> None:
        while self.procs:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.procs.pop(pid, None)
            if proc is None:
                continue
            self._close_pipes(proc)
            # Anything the process left running in its session dies with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if proc.job_id is None:
                self._spare_died(proc, status)
                continue
            self.pids.pop(proc.job_id, None)
            self.busy.discard(proc.job_id)
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

    def _spare_died(self, proc: _Proc, status: int) -> None:
        with contextlib.suppress(ValueError):
            self.spares.remove(proc)
        send_frame(self.ctrl, {"t": "spare_gone", "pid": proc.pid})
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return  # retired: its pipe was closed without a job
        # A spare that keeps dying would be forked again and again: first stop warming spares up
        # (the likeliest cause), then stop keeping spares (jobs then get a process of their own).
        self.spare_failures += 1
        if self.spare_failures >= _SPARE_FAILURES_LIMIT:
            self.spare_failures = 0
            if self.warm_up != "never":
                self.warm_up = "never"
            else:
                self.slots = 0
            print(
                f"warm parent: spares keep dying (status {status}); "
                f"warm-up {self.warm_up}, spares {self.slots}",
                file=sys.stderr,
                flush=True,
            )

    def _exit(self, code: int) -> None:
        for pid in list(self.procs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        os._exit(code)

    # ---- in the spare process -----------------------------------------------------------------

    def _child(self, rfd: int, state_fd: int, warm_up: bool) -> int:  # pragma: no cover - child
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
        # later closes a number the job has reused; then everything else above stderr but its
        # own two pipes (the control socket, other spares' pipes).
        self.selector.close()
        for sock in (self.ctrl, self.wake_r, self.wake_w):
            sock.close()
        low, high = sorted((rfd, state_fd))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, _max_fd())
        # Until it has a job, nothing it prints belongs anywhere (not in the service's output).
        null_fd = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null_fd, fd)
        os.close(null_fd)

        from prefect_qiskit_runtime.server import runner

        if warm_up:
            with contextlib.suppress(OSError):
                os.write(state_fd, b"w")
            runner.warm_up(lambda: bool(select.select([rfd], [], [], 0)[0]))
        os.close(state_fd)  # EOF: not warming (any more), a job may come
        chunks = []
        while chunk := os.read(rfd, 1 << 20):
            chunks.append(chunk)
        os.close(rfd)
        if not chunks:
            return 0  # retired without a job
        return self._job(json.loads(b"".join(chunks)))

    def _job(self, frame: dict[str, Any]) -> int:  # pragma: no cover - child process
        spec: dict[str, Any] = frame["spec"]
        # The job's own CPU time starts now, not with the warm-up.
        begin = resource.getrusage(resource.RUSAGE_SELF)
        cpu_begin = begin.ru_utime + begin.ru_stime
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(frame["socket_path"])
        hello = {"t": "hello", "job_id": frame["job_id"], "token": frame["token"]}
        send_frame(conn, hello | {"pid": os.getpid()})
        try:
            streams = _prepare_process(spec)
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
            # On top of the interpreter as it is now: the preloaded modules, and in a warmed-up
            # spare also Aer's threads and arenas (mostly reserved address space), which a job
            # that uses Aer would otherwise map itself. The job's own allocations are what count.
            base_kb = max(self.baseline_kb, _vm_size_kb())
            limit = base_kb * 1024 + int(limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        def send(out: dict[str, Any]) -> None:
            if out.get("t") in ("result", "error"):
                # The executor finishes the job as soon as this frame and EOF have arrived,
                # without waiting for this process to exit, and reads job.log then: every byte
                # of output must already be in the file, and none may follow.
                _detach_logs(streams)
                usage = resource.getrusage(resource.RUSAGE_SELF)
                out["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime - cpu_begin, 6)
                out["max_rss_kb"] = usage.ru_maxrss
            send_frame(conn, out)

        ok = runner.execute(spec, send)
        conn.close()
        return 0 if ok else 1


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def _prepare_process(  # pragma: no cover - child process
    spec: dict[str, Any],
) -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    """Working directory, log file on fds 1 and 2, stdin from /dev/null, limits, fresh RNG state.

    Returns:
        The ``sys.stdout`` and ``sys.stderr`` it installed (a program may replace them).
    """
    os.chdir(spec["workdir"])
    log_fd = os.open(LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    # One unbuffered-enough text stream per fd: lines from print() and from logging interleave in
    # the order they were written; the C library's own buffers are flushed before the result.
    stdout = io.TextIOWrapper(
        open(1, "wb", closefd=False),  # noqa: SIM115 - lives as long as the process
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False),  # noqa: SIM115 - lives as long as the process
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )
    sys.stdout, sys.stderr = stdout, stderr
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's stdin for its lifetime
    sys.argv = ["program.py"]
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    # Exceeding RLIMIT_FSIZE then fails the write (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import numpy as np

    # Forked processes share the parent's global NumPy RNG state; Python's random reseeds itself.
    np.random.seed()
    return stdout, stderr


def _detach_logs(streams: tuple[io.TextIOWrapper, ...]) -> None:  # pragma: no cover - child
    """Flush every buffer of output into job.log, then point fds 1 and 2 at /dev/null.

    Python's streams (the ones installed, and whatever the program put in their place) and the C
    library's stdio buffers (printf from extensions) are flushed; writes to the log file go
    straight to the page cache, so a reader sees them once ``write`` returns. Pointing fds 1 and
    2 at /dev/null (rather than closing them) means nothing this process writes later (a thread
    of the program, say) reaches the log after the executor has read it, and no later ``open``
    can reuse the numbers 1 and 2.
    """
    for stream in (sys.stdout, sys.stderr, *streams):
        with contextlib.suppress(Exception):
            stream.flush()
    if _LIBC is not None:
        _LIBC.fflush(None)
    with contextlib.suppress(OSError):
        null_fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null_fd, 1)
        os.dup2(null_fd, 2)
        os.close(null_fd)


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
