"""How a local job ended, told from what its process reported, its exit status and its log file.

The :class:`~.base.Outcome` carries the status the scheduler stores, the program's result or
error text, the captured log (cut to the job's ``log_limit_bytes`` with a marker line) and
``details``: wall and CPU time, peak RSS, pid, the kind of process (``warm``/``cold`` spare or
``fresh`` fork), the exit code or signal, and a ``reason_code`` for whatever did not complete.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from prefect_qiskit_runtime.core.models import ReasonCode
from prefect_qiskit_runtime.server.executors.base import Outcome
from prefect_qiskit_runtime.server.executors.ipc import EXIT_SETUP_FAILED, LOG_FILE
from prefect_qiskit_runtime.server.executors.jobs import LocalJob

__all__ = ["job_outcome", "read_logs", "reported_outcome"]


def job_outcome(job: LocalJob, memory_limit_mb: int | None) -> Outcome:
    """The outcome of a job the executor is finishing.

    Args:
        job: The job, with everything its process and the warm parent reported.
        memory_limit_mb: The executor's default memory limit (the job's own one wins).

    Returns:
        ``CANCELLED`` if it was cancelled, ``COMPLETED`` with a result, ``FAILED`` with the
        program's error, else ``LOST`` with what is known of the process's end.
    """
    spec = job.spec
    details = _process_details(job)
    status = None if job.exit is None else int(job.exit["status"])
    limit = spec.memory_limit_mb if spec.memory_limit_mb is not None else memory_limit_mb
    logs = read_logs(spec.workdir / LOG_FILE, spec.log_limit_bytes)
    outcome = reported_outcome(
        cancelled=job.cancel_requested,
        result=job.result,
        error=job.error,
        exc_type=job.exc_type,
        memory_limit_mb=limit,
        logs=logs,
        details=details,
    )
    if outcome is not None:
        return outcome
    details["reason_code"], reason = _lost_reason(job, status)
    return Outcome("LOST", error=reason, logs=logs, details=details)


def reported_outcome(
    *,
    cancelled: bool,
    result: str | None,
    error: str | None,
    exc_type: str | None,
    memory_limit_mb: int | None,
    logs: str,
    details: dict[str, Any],
) -> Outcome | None:
    """The outcome of a job that was cancelled or whose process reported its end, whatever ran it.

    Args:
        cancelled: Whether the scheduler cancelled it (that wins over anything reported).
        result: The final result's JSON text, if the program completed.
        error: The program's traceback text, if it failed.
        exc_type: The name of the exception's class, with ``error``.
        memory_limit_mb: The job's memory limit (a ``MemoryError`` under one says so).
        logs: The captured log, already cut to the job's limit.
        details: Facts about the process; ``memory_limit_exceeded``, ``exception`` and
            ``reason_code`` are added.

    Returns:
        ``CANCELLED``, ``COMPLETED`` or ``FAILED``; ``None`` when the process said nothing (lost).
    """
    details["memory_limit_exceeded"] = bool(memory_limit_mb) and exc_type == "MemoryError"
    if cancelled:
        details["reason_code"] = ReasonCode.CANCELLED_BY_USER.value
        return Outcome("CANCELLED", error="Cancelled", logs=logs, details=details)
    if result is not None and error is None:
        return Outcome("COMPLETED", result=result, logs=logs, details=details)
    if error is None:
        return None
    details["exception"] = exc_type
    if details["memory_limit_exceeded"]:
        details["reason_code"] = ReasonCode.MEMORY_LIMIT.value
        error += f"(The job exceeded its memory limit of {memory_limit_mb} MB.)\n"
    elif exc_type == "MessageTooLargeError":
        details["reason_code"] = ReasonCode.INVALID_RESULT.value
    else:
        details["reason_code"] = ReasonCode.PROGRAM_ERROR.value
    return Outcome("FAILED", error=error, logs=logs, details=details)


def _process_details(job: LocalJob) -> dict[str, Any]:
    """Wall time, pid, kind of process, usage, and how the process ended if it was reaped."""
    details: dict[str, Any] = {"wall_seconds": round(time.monotonic() - job.submitted, 6)}
    if job.pid is not None:
        details["pid"] = job.pid
    if job.process is not None:
        details["process"] = job.process
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
    return details


def _lost_reason(job: LocalJob, status: int | None) -> tuple[str, str]:
    """The reason code and the error text of a job that ended without a result or an error."""
    # Killed, crashed or orphaned: nothing the program said explains it, so running it again
    # may work — except when the program itself ended its process without a result.
    lost = ReasonCode.WORKER_LOST.value
    if job.lost_reason is not None:
        return lost, f"The job was lost: {job.lost_reason}."
    if status is not None and os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        reason = f"The job's process was killed by signal {sig.name} ({int(sig)})"
        if sig == signal.SIGKILL:
            reason += " (killed from outside, for example by the out-of-memory killer)"
        elif sig == signal.SIGSEGV:
            reason += " (it crashed)"
        return lost, reason + " before it reported a result."
    if status is not None:
        code = os.WEXITSTATUS(status)
        reason_code = lost if code == EXIT_SETUP_FAILED else ReasonCode.PROGRAM_ERROR.value
        return (
            reason_code,
            f"The job's process exited with code {code} before it reported a result.",
        )
    # _maybe_finish never finishes a job without a result, an error, an exit or a lost reason.
    return lost, "The job's process ended without reporting a result."  # pragma: no cover


def read_logs(path: Path, limit: int) -> str:
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
