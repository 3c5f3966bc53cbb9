"""Sessions, batches and the extras of modern-API jobs (session, privacy, tags).

Everything here is scoped by owner: a session or job of another user is never found. A job joins
its session inside the transaction that creates it (:func:`join_session` and :func:`record_extras`
run on the job's own connection), so a session that is closed at the same moment either got the
job before it closed or refuses it; no job slips into a closed session.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Float, and_, bindparam, cast, delete, exists, func, select, update
from sqlalchemy.engine import Connection, Row

from prefect_qiskit_runtime.core.models import FINAL_STATES, PENDING_STATES, JobState
from prefect_qiskit_runtime.server.store.engine import StoreBase, rowcount
from prefect_qiskit_runtime.server.store.session_tables import (
    JOB_EXTRAS,
    JOB_TAGS,
    SESSIONS,
    RuntimeSession,
)
from prefect_qiskit_runtime.server.store.tables import JOB_LIGHT, JOBS, Job, job_from_row, utcnow

_PENDING = [state.value for state in PENDING_STATES]
_FINAL = [state.value for state in FINAL_STATES]

_SESSION_FOR_JOB = select(SESSIONS).where(
    SESSIONS.c.id == bindparam("session_id"), SESSIONS.c.owner_id == bindparam("owner_id")
)


@dataclass(frozen=True)
class JobExtras:
    """The modern-API facts about one job."""

    session_id: str | None = None
    private: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionJobs:
    """What a session's details need to know about its jobs."""

    total: int
    pending: int
    first_started: datetime | None
    last_started: datetime | None
    last_ended: datetime | None
    run_seconds: float


@dataclass(frozen=True)
class JobFilter:
    """Which of a user's jobs a list shows (``None`` fields do not filter)."""

    pending: bool | None = None
    program_id: str | None = None
    backend: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None


def new_session_id() -> str:
    """Return a fresh session id (20 lowercase hex characters, like a job id)."""
    return secrets.token_hex(10)


def join_session(conn: Connection, session_id: str, owner_id: str) -> Row[Any] | None:
    """Read (and on PostgreSQL lock) the owner's session a new job is joining.

    Called inside the job's creation transaction, so a concurrent close waits for it (PostgreSQL
    row lock, SQLite write lock) and the caller's check of ``accepting_jobs`` holds until commit.

    Args:
        conn: The job creation's connection.
        session_id: The session asked for.
        owner_id: The job's owner.

    Returns:
        The session row, or ``None`` when the owner has no such session.
    """
    query = _SESSION_FOR_JOB
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return conn.execute(query, {"session_id": session_id, "owner_id": owner_id}).first()


def record_extras(conn: Connection, job_id: str, extras: JobExtras) -> None:
    """Write a new job's extras and tags on the job creation's connection.

    Args:
        conn: The job creation's connection (the job row exists in it).
        job_id: The new job.
        extras: Its session, privacy and tags.
    """
    conn.execute(
        JOB_EXTRAS.insert(),
        {"job_id": job_id, "session_id": extras.session_id, "private": extras.private},
    )
    if extras.tags:
        conn.execute(JOB_TAGS.insert(), [{"job_id": job_id, "tag": tag} for tag in extras.tags])


def _run_seconds(sqlite: bool) -> Any:
    """SQL summing ``ended - started`` of the selected jobs, in seconds."""
    if sqlite:
        return func.sum((func.julianday(JOBS.c.ended) - func.julianday(JOBS.c.started)) * 86400.0)
    return func.sum(func.extract("epoch", JOBS.c.ended - JOBS.c.started))


class SessionStore(StoreBase):
    """The store's sessions and the extras of modern-API jobs."""

    def create_session(
        self, owner_id: str, backend: str, mode: str, max_ttl: int, interactive_ttl: int
    ) -> RuntimeSession:
        """Create an open session accepting jobs.

        Args:
            owner_id: The caller.
            backend: Its backend (already checked).
            mode: ``dedicated`` or ``batch``.
            max_ttl: Seconds after its creation the session stops accepting jobs.
            interactive_ttl: Seconds reported as its idle timeout.

        Returns:
            The new session.
        """
        session = RuntimeSession(
            id=new_session_id(),
            owner_id=owner_id,
            backend=backend,
            mode=mode,
            max_ttl=max_ttl,
            interactive_ttl=interactive_ttl,
            accepting_jobs=True,
            created=utcnow(),
        )
        with self.write() as s:
            s.add(session)
        return session

    def get_session(self, session_id: str, owner_id: str) -> RuntimeSession | None:
        """The owner's session, or ``None``."""
        with self.read() as s:
            return s.scalars(
                select(RuntimeSession).where(
                    RuntimeSession.id == session_id, RuntimeSession.owner_id == owner_id
                )
            ).first()

    def stop_session(self, session_id: str, owner_id: str, *, cancel: bool) -> bool:
        """Stop accepting jobs; with ``cancel``, also mark the session closed now.

        Args:
            session_id: The session.
            owner_id: Its owner.
            cancel: The session is cancelled (its pending jobs are being cancelled).

        Returns:
            Whether the owner has such a session.
        """
        values: dict[str, Any] = {"accepting_jobs": False}
        if cancel:
            values["closed_at"] = func.coalesce(SESSIONS.c.closed_at, utcnow())
        with self.core_write() as conn:
            result = conn.execute(
                update(SESSIONS)
                .where(SESSIONS.c.id == session_id, SESSIONS.c.owner_id == owner_id)
                .values(**values)
            )
            return rowcount(result) > 0

    def session_jobs(self, session_id: str) -> SessionJobs:
        """Counts and times of a session's jobs."""
        run = _run_seconds(self.is_sqlite)
        pending = func.sum(cast(JOBS.c.status.in_(_PENDING), Float))
        query = (
            select(
                func.count(),
                pending,
                func.min(JOBS.c.started),
                func.max(JOBS.c.started),
                func.max(JOBS.c.ended),
                run,
            )
            .select_from(JOBS.join(JOB_EXTRAS, JOB_EXTRAS.c.job_id == JOBS.c.id))
            .where(JOB_EXTRAS.c.session_id == session_id)
        )
        with self.core_read() as conn:
            total, pending_count, first, last, ended, seconds = conn.execute(query).one()
        return SessionJobs(
            total=int(total or 0),
            pending=int(pending_count or 0),
            first_started=_aware(first),
            last_started=_aware(last),
            last_ended=_aware(ended),
            run_seconds=float(seconds or 0.0),
        )

    def pending_session_jobs(self, session_id: str) -> list[str]:
        """Ids of the session's QUEUED and RUNNING jobs, oldest first."""
        query = (
            select(JOBS.c.id)
            .select_from(JOBS.join(JOB_EXTRAS, JOB_EXTRAS.c.job_id == JOBS.c.id))
            .where(JOB_EXTRAS.c.session_id == session_id, JOBS.c.status.in_(_PENDING))
            .order_by(JOBS.c.n)
        )
        with self.core_read() as conn:
            return [row[0] for row in conn.execute(query)]

    def job_extras(self, job_ids: Sequence[str]) -> dict[str, JobExtras]:
        """The extras of each modern-API job among ``job_ids`` (others are absent)."""
        if not job_ids:
            return {}
        ids = list(job_ids)
        with self.core_read() as conn:
            rows = conn.execute(select(JOB_EXTRAS).where(JOB_EXTRAS.c.job_id.in_(ids))).all()
            tags: dict[str, list[str]] = {}
            for job_id, tag in conn.execute(
                select(JOB_TAGS.c.job_id, JOB_TAGS.c.tag)
                .where(JOB_TAGS.c.job_id.in_(ids))
                .order_by(JOB_TAGS.c.tag)
            ):
                tags.setdefault(job_id, []).append(tag)
        return {
            row.job_id: JobExtras(
                row.session_id, bool(row.private), tuple(tags.get(row.job_id, ()))
            )
            for row in rows
        }

    def replace_job_tags(self, job_id: str, owner_id: str, tags: Sequence[str]) -> bool:
        """Replace the tags of the owner's job.

        Returns:
            Whether the owner has such a job.
        """
        with self.core_write() as conn:
            owned = conn.execute(
                select(JOBS.c.id).where(JOBS.c.id == job_id, JOBS.c.owner_id == owner_id)
            ).first()
            if owned is None:
                return False
            conn.execute(delete(JOB_TAGS).where(JOB_TAGS.c.job_id == job_id))
            if tags:
                conn.execute(JOB_TAGS.insert(), [{"job_id": job_id, "tag": t} for t in tags])
            return True

    def filter_jobs(
        self, owner_id: str, where: JobFilter, limit: int, offset: int, *, ascending: bool = False
    ) -> tuple[list[Job], int]:
        """A page of the owner's jobs (without results, errors and logs) and how many match.

        Args:
            owner_id: The caller.
            where: The filters.
            limit: Page size.
            offset: Matching jobs to skip.
            ascending: Oldest first instead of newest first.

        Returns:
            The page and the number of matching jobs.
        """
        conditions: list[Any] = [JOBS.c.owner_id == owner_id]
        if where.pending is not None:
            conditions.append(JOBS.c.status.in_(_PENDING if where.pending else _FINAL))
        if where.program_id is not None:
            conditions.append(JOBS.c.program_id == where.program_id)
        if where.backend is not None:
            conditions.append(JOBS.c.backend == where.backend)
        if where.created_after is not None:
            conditions.append(JOBS.c.created >= where.created_after)
        if where.created_before is not None:
            conditions.append(JOBS.c.created <= where.created_before)
        if where.session_id is not None:
            conditions.append(
                exists().where(
                    JOB_EXTRAS.c.job_id == JOBS.c.id, JOB_EXTRAS.c.session_id == where.session_id
                )
            )
        for tag in where.tags:
            conditions.append(
                exists().where(and_(JOB_TAGS.c.job_id == JOBS.c.id, JOB_TAGS.c.tag == tag))
            )
        order = JOBS.c.n.asc() if ascending else JOBS.c.n.desc()
        page = JOB_LIGHT.where(*conditions).order_by(order).offset(offset).limit(limit)
        count = select(func.count()).select_from(JOBS).where(*conditions)
        with self.core_read() as conn:
            total = conn.execute(count).scalar() or 0
            jobs = [job_from_row(row) for row in conn.execute(page)]
        return jobs, int(total)

    def queued_per_backend(self) -> dict[str, int]:
        """How many jobs wait in the queue for each backend."""
        query = (
            select(JOBS.c.backend, func.count())
            .where(JOBS.c.status == JobState.QUEUED.value)
            .group_by(JOBS.c.backend)
        )
        with self.core_read() as conn:
            return {backend: int(count) for backend, count in conn.execute(query)}

    def run_seconds_since(self, owner_id: str, since: datetime) -> float:
        """Seconds the owner's jobs that ended after ``since`` spent running."""
        query = select(_run_seconds(self.is_sqlite)).where(
            JOBS.c.owner_id == owner_id,
            JOBS.c.started.is_not(None),
            JOBS.c.ended.is_not(None),
            JOBS.c.ended >= since,
        )
        with self.core_read() as conn:
            return float(conn.execute(query).scalar() or 0.0)


def _aware(value: Any) -> datetime | None:
    """A timestamp read by an aggregate (SQLite gives text or naive UTC) as an aware UTC one."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value if isinstance(value, datetime) else None


__all__ = [
    "JobExtras",
    "JobFilter",
    "SessionJobs",
    "SessionStore",
    "join_session",
    "new_session_id",
    "record_extras",
]
