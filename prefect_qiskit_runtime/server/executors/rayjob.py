"""What a Ray worker does for one job: a directory of its own, its limits and log, the program.

:func:`run_job` runs only inside a Ray worker process, as the streaming-generator task that
:class:`~prefect_qiskit_runtime.server.executors.rayexec.RayExecutor` submits with ``max_calls=1``:
the process runs this one job and then exits, so no two jobs ever share a process. The spec arrives
as JSON-able values only (the program's source and the inputs as text, numbers, names), never as
pickled objects of a user's; the program is compiled and run here, and only here.

The worker takes the job on as a forked job process of the local executor does
(:mod:`.child`): a fresh directory ``<tmp>/pqr-ray-jobs/<pid>-<random>`` as its working directory,
fds 1 and 2 on ``job.log`` there, the address-space limit, and with ``sandbox`` ``auto`` (where the
node's kernel has Landlock) or ``landlock`` the confinement to that directory, so that a job reads
neither another job's directory nor the service's home. A confined process cannot delete its own
directory; the next job on the node removes the directories of workers that are gone.

Every frame is a yield of the generator, which Ray hands to the executor as it happens:

- ``{"t": "started", "pid", "node", "version"}``, first;
- ``{"t": "messages", "data": [text, ...]}``: the interim results published since the previous
  yield, in order (a program that publishes in bursts costs one yield per burst);
- last, the runner's ``result`` or ``error`` frame with ``logs`` (stdout, stderr and logging, cut
  to ``log_limit_bytes``), ``cpu_seconds`` and ``max_rss_kb``.

Ray iterates the generator on the worker's main thread, and a generator cannot yield from inside the
runner's ``send``: the program therefore runs in a thread of its own and hands its frames over a
queue, while the generator yields them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_qiskit_runtime.server.executors.child import (
    cpu_seconds,
    limit_memory,
    prepare_process,
    seal_last_frame,
    setup_failed,
)
from prefect_qiskit_runtime.server.executors.ipc import LOG_FILE
from prefect_qiskit_runtime.server.executors.outcome import read_logs
from prefect_qiskit_runtime.server.executors.sandbox import resolve_sandbox

__all__ = ["JOBS_DIR", "remove_stale", "run_job"]

#: Parent of the job directories on a node, beneath the node's temporary directory.
JOBS_DIR = "pqr-ray-jobs"


def run_job(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:  # pragma: no cover - Ray worker
    """Run one job in this Ray worker and yield its frames (see the module docstring).

    Args:
        spec: ``program_source``, ``params_json``, ``backend_name``, ``log_level``,
            ``memory_limit_mb``, ``log_limit_bytes``, ``max_message_bytes``, ``max_result_bytes``,
            ``sandbox`` (``auto``, ``landlock`` or ``off``) and ``protected_paths``.

    Yields:
        ``started``, then ``messages`` frames, then one ``result`` or ``error`` frame.
    """
    import ray

    from prefect_qiskit_runtime._version import __version__

    cpu_begin = cpu_seconds()
    base = _jobs_base()
    workdir = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base)
    yield {
        "t": "started",
        "pid": os.getpid(),
        "node": ray.util.get_node_ip_address(),
        "version": __version__,
    }
    saved = _save_output()
    try:
        spec = {
            **spec,
            "workdir": workdir,
            "sandbox": resolve_sandbox(str(spec.get("sandbox") or "off")),
            # Read access never reaches the other jobs' directories, whatever sys.path holds.
            "protected_paths": [*spec.get("protected_paths", ()), base],
        }
        streams = prepare_process(spec)
    except BaseException as exc:
        _restore_output(saved)
        yield setup_failed(exc)
        return
    limit_memory(spec.get("memory_limit_mb"), 0)
    frames: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def send(out: dict[str, Any]) -> None:
        if out.get("t") in ("result", "error"):
            seal_last_frame(out, streams, cpu_begin)
        frames.put(out)

    from prefect_qiskit_runtime.server import runner

    program = threading.Thread(
        target=runner.execute, args=(spec, send), name="runtime-program", daemon=True
    )
    program.start()
    while True:
        batch = _take_batch(frames)
        messages = [str(frame["data"]) for frame in batch if frame["t"] == "message"]
        if messages:
            yield {"t": "messages", "data": messages}
        last = batch[-1]
        if last["t"] != "message":
            break
    last["logs"] = read_logs(Path(workdir) / LOG_FILE, int(spec.get("log_limit_bytes") or 0))
    _restore_output(saved)
    # Confined, the process may empty its directory but not remove it (see remove_stale).
    shutil.rmtree(workdir, ignore_errors=True)
    yield last


def _take_batch(frames: queue.SimpleQueue[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next frame (waiting for it) and the interim ones queued behind it, up to a last one."""
    batch = [frames.get()]
    with contextlib.suppress(queue.Empty):
        while batch[-1]["t"] == "message":
            batch.append(frames.get_nowait())
    return batch


def _jobs_base() -> str:  # pragma: no cover - Ray worker
    """The node's directory of job directories (owner-only), without those of dead workers."""
    base = os.path.join(tempfile.gettempdir(), JOBS_DIR)
    os.makedirs(base, mode=0o700, exist_ok=True)
    remove_stale(base)
    return base


def remove_stale(base: str) -> None:
    """Remove the job directories in ``base`` whose worker process no longer exists."""
    with contextlib.suppress(OSError), os.scandir(base) as entries:
        for entry in entries:
            pid, _, _ = entry.name.partition("-")
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _save_output() -> tuple[int, int, Any, Any, Any]:  # pragma: no cover - Ray worker
    """The worker's own fds 1 and 2 and standard streams, for after the job."""
    return os.dup(1), os.dup(2), sys.stdin, sys.stdout, sys.stderr


def _restore_output(saved: tuple[int, int, Any, Any, Any]) -> None:  # pragma: no cover - Ray worker
    """Give the worker back its own output (Ray's log files): what it says next is not the job's."""
    out_fd, err_fd, sys.stdin, sys.stdout, sys.stderr = saved
    for fd, target in ((out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
