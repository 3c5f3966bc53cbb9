"""What a child of the warm parent does: isolate itself, wait as a spare, then run one job.

Runs only in processes forked by :class:`~prefect_qiskit_runtime.server.executors.warm.WarmParent`
(:func:`run_child` never returns to the warm parent's loop). A child starts its own session (so
one ``killpg`` ends it and anything it starts), dies with the warm parent (``PR_SET_PDEATHSIG``),
closes every inherited descriptor except its own two pipes (job in, state out), puts
``/dev/null`` on fds 0-2, may run :func:`~prefect_qiskit_runtime.server.runner.warm_up` (no user
code; it writes ``w`` to its state pipe first and closes the pipe when done), and blocks on its job
pipe. A child whose job pipe closes without a job exits.

Only once it has a job does it take the job on: it connects to the executor's unix socket,
redirects fds 1 and 2 to ``job.log`` in the job's working directory (so output of C extensions is
caught too), applies the job's limits (address space, file size, no core dumps) and calls
:func:`prefect_qiskit_runtime.server.runner.execute`.

A process kept as a dedicated session's worker (the job frame says ``session_worker``, see
:mod:`.session_workers`) does not exit after its job: it reads the next job frame from the same
pipe and runs that job the same way (its own connection, directory and log), until EOF. It is
confined once, to the session's directory, and its memory limit is set once.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import resource
import select
import signal
import socket
import sys
from collections.abc import Iterable
from typing import Any, Protocol

from prefect_qiskit_runtime.server.executors.ipc import EXIT_SETUP_FAILED, LOG_FILE, send_frame

__all__ = [
    "MAX_FILE_BYTES",
    "cpu_seconds",
    "detach_logs",
    "limit_memory",
    "prepare_process",
    "run_child",
    "seal_last_frame",
    "setup_failed",
    "vm_size_kb",
]

#: Largest file a job process may write (the log included); beyond it writes fail with EFBIG.
MAX_FILE_BYTES = 1 << 30

_PR_SET_PDEATHSIG = 1


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not on glibc/musl
        return None


_LIBC = _libc()


class _Closable(Protocol):
    def close(self) -> None: ...


def vm_size_kb() -> int:
    """This process's address-space size (``VmSize``) in KiB."""
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1])
    return 0  # pragma: no cover


def run_child(  # pragma: no cover - runs in the child
    rfd: int, state_fd: int, warm_up: bool, *, inherited: Iterable[_Closable], baseline_kb: int
) -> int:
    """The life of a forked child, from isolation to the job's end.

    Args:
        rfd: Read end of its job pipe (the ``run`` frame, then EOF; EOF alone retires it).
        state_fd: Write end of its state pipe (``w`` when a warm-up starts, closed when done).
        warm_up: Whether to warm up before waiting for a job.
        inherited: The warm parent's sockets and selector, closed before anything else runs.
        baseline_kb: The warm parent's address space after preloading, under the memory limit.

    Returns:
        The exit code: 0 when retired or the program completed, 1 when it failed,
        ``EXIT_SETUP_FAILED`` when the process could not be prepared.
    """
    if not _isolate(rfd, state_fd, inherited):
        return EXIT_SETUP_FAILED
    frame = _wait_for_job(rfd, state_fd, warm_up)
    if frame is None:
        return 0  # retired without a job
    if not frame.get("session_worker"):
        os.close(rfd)
        return _run_job(frame, baseline_kb)
    # Kept for a dedicated session: one job after the other, until the pipe closes.
    number = 0
    while frame is not None:
        number += 1
        code = _run_job(frame, baseline_kb, number)
        if code == EXIT_SETUP_FAILED:
            return code
        frame = _read_frame(rfd)
    return 0


def _isolate(  # pragma: no cover - child
    rfd: int, state_fd: int, inherited: Iterable[_Closable]
) -> bool:
    """Own session, death with the warm parent, default signals, only its own descriptors."""
    parent = os.getppid()
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the warm parent died before prctl took effect
        return False
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Close the parent's descriptors through their objects first, so that no Python object
    # later closes a number the job has reused; then everything else above stderr but its
    # own two pipes (the control socket, other spares' pipes).
    for obj in inherited:
        obj.close()
    low, high = sorted((rfd, state_fd))
    os.closerange(3, low)
    os.closerange(low + 1, high)
    os.closerange(high + 1, _max_fd())
    # Until it has a job, nothing it prints belongs anywhere (not in the service's output).
    null_fd = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null_fd, fd)
    os.close(null_fd)
    return True


def _wait_for_job(  # pragma: no cover - child
    rfd: int, state_fd: int, warm_up: bool
) -> dict[str, Any] | None:
    """Warm up if asked to, then block until the job's frame (or EOF without one) arrives."""
    from prefect_qiskit_runtime.server import runner

    if warm_up:
        with contextlib.suppress(OSError):
            os.write(state_fd, b"w")
        runner.warm_up(lambda: bool(select.select([rfd], [], [], 0)[0]))
    os.close(state_fd)  # EOF: not warming (any more), a job may come
    return _read_frame(rfd)


def _read_exactly(fd: int, size: int) -> bytes | None:  # pragma: no cover - child
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(rfd: int) -> dict[str, Any] | None:  # pragma: no cover - child
    """The next job frame on the job pipe (length-prefixed JSON), ``None`` at EOF."""
    header = _read_exactly(rfd, 4)
    if header is None:
        return None
    body = _read_exactly(rfd, int.from_bytes(header, "big"))
    if body is None:
        return None
    frame: dict[str, Any] = json.loads(body)
    return frame


def _run_job(  # pragma: no cover - child
    frame: dict[str, Any], baseline_kb: int, number: int = 1
) -> int:
    """Run one job; ``number`` counts the jobs this process ran (a session worker runs many)."""
    spec: dict[str, Any] = frame["spec"]
    if frame.get("session_worker"):
        spec["confine_dir"] = spec.get("session_dir") or spec["workdir"]
    spec["worker"] = {"pid": os.getpid(), "session": frame.get("session_id"), "job": number}
    # The job's own CPU time starts now, not with the warm-up.
    cpu_begin = cpu_seconds()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(frame["socket_path"])
    hello = {"t": "hello", "job_id": frame["job_id"], "token": frame["token"]}
    send_frame(conn, hello | {"pid": os.getpid()})
    try:
        streams = prepare_process(spec, first=number == 1)
    except BaseException as exc:
        send_frame(conn, setup_failed(exc))
        return EXIT_SETUP_FAILED
    send_frame(conn, {"t": "started"})

    from prefect_qiskit_runtime.server import runner

    if number == 1:  # a limit is set once: a session's later jobs live under the first's
        limit_memory(spec.get("memory_limit_mb"), baseline_kb)

    def send(out: dict[str, Any]) -> None:
        if out.get("t") in ("result", "error"):
            # The executor finishes the job as soon as this frame and EOF have arrived,
            # without waiting for this process to exit.
            seal_last_frame(out, streams, cpu_begin)
        send_frame(conn, out)

    from prefect_qiskit_runtime.server.calls import Inbox

    max_call = int(spec.get("max_message_bytes") or runner.DEFAULT_MAX_MESSAGE_BYTES)
    ok = runner.execute(spec, send, Inbox(conn, send, 2 * max_call + 4096))
    conn.close()
    return 0 if ok else 1


def cpu_seconds() -> float:
    """The CPU time (user and system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def setup_failed(exc: BaseException) -> dict[str, Any]:
    """The ``error`` frame of a job whose process could not be set up (no fault of the program)."""
    return {
        "t": "error",
        "traceback": f"the job's process could not be prepared: {exc!r}",
        "exc_type": type(exc).__name__,
        "setup": True,
    }


def seal_last_frame(  # pragma: no cover - child
    out: dict[str, Any], streams: tuple[io.TextIOWrapper, ...], cpu_begin: float
) -> None:
    """Complete a job's ``result`` or ``error`` frame: logs flushed and detached, usage added.

    The executor reads job.log once this frame has arrived: every byte of output must already be
    in the file, and none may follow.
    """
    detach_logs(streams)
    out["cpu_seconds"] = round(cpu_seconds() - cpu_begin, 6)
    out["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def limit_memory(limit_mb: int | None, baseline_kb: int) -> None:  # pragma: no cover - child
    """Cap the address space at its current size (or ``baseline_kb``, if larger) + ``limit_mb``."""
    if not limit_mb:
        return
    # On top of the interpreter as it is now: the preloaded modules, and in a warmed-up
    # spare also Aer's threads and arenas (mostly reserved address space), which a job
    # that uses Aer would otherwise map itself. The job's own allocations are what count.
    base_kb = max(baseline_kb, vm_size_kb())
    limit = base_kb * 1024 + int(limit_mb) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def prepare_process(  # pragma: no cover - child process
    spec: dict[str, Any], *, first: bool = True
) -> tuple[io.TextIOWrapper, io.TextIOWrapper]:
    """Working directory, log file on fds 1 and 2, stdin from /dev/null, limits, fresh RNG state.

    Args:
        spec: The job's spec.
        first: Whether this is the process's first job (only then is it confined: a session
            worker is confined once, to its session's directory, ``confine_dir``).

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
    if spec.get("sandbox") == "landlock" and first:
        _confine(spec)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    # Exceeding RLIMIT_FSIZE then fails the write (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import numpy as np

    # Forked processes share the parent's global NumPy RNG state; Python's random reseeds itself.
    np.random.seed()
    return stdout, stderr


def _confine(spec: dict[str, Any]) -> None:  # pragma: no cover - child process
    """From here on the job reads and writes its own directory only (and reads the system's).

    Temporary files go to ``tmp`` inside it, the one place it may write.
    """
    import tempfile

    from prefect_qiskit_runtime.server.executors.sandbox import confine, job_read_roots

    workdir = spec.get("confine_dir") or spec["workdir"]
    tmp = os.path.join(workdir, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = None
    confine([workdir], spec.get("protected_paths", []), readable=job_read_roots())


def detach_logs(streams: tuple[io.TextIOWrapper, ...]) -> None:  # pragma: no cover - child
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
