"""Sessions and batches of the modern Qiskit Runtime API.

A session (mode ``dedicated``) or batch (mode ``batch``) groups jobs on one backend. Its jobs are
scheduled like any other job; a dedicated session's jobs run in one worker process the executor
keeps for the session (:mod:`~prefect_qiskit_runtime.server.executors.session_workers`), which is
let go when the session stops accepting jobs. It carries the lifecycle the client drives:

- it accepts jobs until it is closed (``PATCH {"accepting_jobs": false}``), cancelled, or its
  ``max_ttl`` (seconds after creation, 8 hours by default) has passed;
- closing lets its pending jobs finish; the session then reports ``closed`` once none is pending;
- cancelling (``DELETE /sessions/{id}/close``) closes it at once and cancels its QUEUED and
  RUNNING jobs, each through the ordinary cancel (the running ones are killed);
- its state is derived from its jobs: ``open`` (no job yet), ``active`` (a job pending),
  ``inactive`` (jobs, none pending), ``closed``.

A session is visible to its owner only; another user's session id is not found.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.server.schemas import SessionCreate
from prefect_qiskit_runtime.server.store import RuntimeSession, User, isoformat
from prefect_qiskit_runtime.server.store.session_tables import SESSION_MODES
from prefect_qiskit_runtime.server.store.sessions import SessionJobs
from prefect_qiskit_runtime.server.usecases import jobs as job_cases
from prefect_qiskit_runtime.server.usecases.errors import (
    InvalidArgument,
    InvalidState,
    NotFound,
    SessionNotFound,
)
from prefect_qiskit_runtime.server.usecases.modern_identity import check_instance
from prefect_qiskit_runtime.server.usecases.validation import check_backend

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.runtime import Runtime

#: A session's ``max_ttl`` when the client sets none: 8 hours.
DEFAULT_MAX_TTL = 8 * 3600
#: The idle timeout a session reports (it does not end a session here).
INTERACTIVE_TTL = 60


def accepts_jobs(session: Any, now: datetime) -> bool:
    """Whether a session (model or row) takes new jobs at ``now``."""
    if not session.accepting_jobs or session.closed_at is not None:
        return False
    created = session.created
    if created.tzinfo is None:  # a Core row of SQLite
        created = created.replace(tzinfo=timezone.utc)
    return bool(now < created + timedelta(seconds=session.max_ttl))


def create(runtime: Runtime, user: User, body: SessionCreate) -> dict[str, Any]:
    """Open a session or batch on a backend.

    Args:
        runtime: The service instance.
        user: The caller.
        body: Mode, backend, instance and ``max_ttl``.

    Returns:
        The session's details.

    Raises:
        InvalidArgument: For an unknown mode or backend.
        PermissionDenied: For an instance other than the caller's.
    """
    if body.mode not in SESSION_MODES:
        raise InvalidArgument("INVALID_REQUEST", f"mode must be one of {', '.join(SESSION_MODES)}.")
    check_instance(user, body.instance)
    check_backend(body.backend, {})
    session = runtime.store.create_session(
        user.id, body.backend, body.mode, body.max_ttl or DEFAULT_MAX_TTL, INTERACTIVE_TTL
    )
    return _details(session, SessionJobs(0, 0, None, None, None, 0.0))


def _owned(runtime: Runtime, user: User, session_id: str) -> RuntimeSession:
    session = runtime.store.get_session(session_id, user.id)
    if session is None:
        raise SessionNotFound(session_id)
    return session


def details(runtime: Runtime, user: User, session_id: str) -> dict[str, Any]:
    """The caller's session: state, whether it accepts jobs, timestamps and usage.

    Raises:
        SessionNotFound: If the caller has no such session.
    """
    session = _owned(runtime, user, session_id)
    return _details(session, runtime.store.session_jobs(session.id))


def update(runtime: Runtime, user: User, session_id: str, accepting_jobs: bool) -> None:
    """Stop (or confirm) accepting jobs; a stopped session never accepts jobs again.

    Raises:
        SessionNotFound: If the caller has no such session.
        InvalidState: When asked to accept jobs again after it stopped.
    """
    session = _owned(runtime, user, session_id)
    if accepting_jobs:
        if not accepts_jobs(session, datetime.now(timezone.utc)):
            raise InvalidState(f"Session {session_id} is closed; it cannot accept jobs again.")
        return
    runtime.store.stop_session(session_id, user.id, cancel=False)
    _release_worker(runtime, session_id)


def _release_worker(runtime: Runtime, session_id: str) -> None:
    """Let the worker process kept for the session go once its last job ended."""
    if runtime.scheduler is not None:
        runtime.scheduler.end_session_threadsafe(session_id)


def cancel(runtime: Runtime, user: User, session_id: str) -> int:
    """Close the session now and cancel its QUEUED and RUNNING jobs.

    The session stops accepting jobs before its jobs are listed, so none can join it after.

    Returns:
        How many jobs this call cancelled.

    Raises:
        SessionNotFound: If the caller has no such session.
    """
    if not runtime.store.stop_session(session_id, user.id, cancel=True):
        raise SessionNotFound(session_id)
    _release_worker(runtime, session_id)
    cancelled = 0
    for job_id in runtime.store.pending_session_jobs(session_id):
        try:
            job_cases.cancel_job(runtime, user, job_id)
            cancelled += 1
        except (InvalidState, NotFound):
            pass  # it ended (or was deleted) meanwhile
    return cancelled


def _state(session: RuntimeSession, jobs: SessionJobs, now: datetime) -> tuple[str, bool]:
    accepting = accepts_jobs(session, now)
    if session.closed_at is not None or (not accepting and not jobs.pending):
        return "closed", False
    if jobs.pending:
        return "active", accepting
    return ("inactive" if jobs.total else "open"), accepting


def _details(session: RuntimeSession, jobs: SessionJobs) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    state, accepting = _state(session, jobs, now)
    closed_at = session.closed_at
    if state == "closed" and closed_at is None:
        expiry = session.created + timedelta(seconds=session.max_ttl)
        closed_at = jobs.last_ended or min(expiry, now)
    if session.mode == "batch":
        elapsed = jobs.run_seconds
    elif jobs.first_started is None:
        elapsed = 0.0
    else:
        until = now if jobs.pending else (jobs.last_ended or now)
        elapsed = max((until - jobs.first_started).total_seconds(), 0.0)
    timestamps = [{"status": "open", "timestamp": isoformat(session.created)}]
    if jobs.first_started is not None:
        timestamps.append({"status": "active", "timestamp": isoformat(jobs.first_started)})
    if closed_at is not None:
        timestamps.append({"status": "closed", "timestamp": isoformat(closed_at)})
    return {
        "id": session.id,
        "backend_name": session.backend,
        "mode": session.mode,
        "state": state,
        "accepting_jobs": accepting,
        "max_ttl": session.max_ttl,
        "interactive_ttl": session.interactive_ttl,
        "active_ttl": session.max_ttl,
        "started_at": isoformat(session.created),
        "activated_at": isoformat(jobs.first_started),
        "last_job_started": isoformat(jobs.last_started),
        "last_job_completed": isoformat(jobs.last_ended),
        "closed_at": isoformat(closed_at),
        "elapsed_time": round(elapsed, 3),
        "jobs": jobs.total,
        "timestamps": timestamps,
    }


__all__ = [
    "DEFAULT_MAX_TTL",
    "INTERACTIVE_TTL",
    "accepts_jobs",
    "cancel",
    "create",
    "details",
    "update",
]
