"""Jobs: submission (with its idempotency key), listing, reads and deletion.

How a job's status changes afterwards is in :mod:`.lifecycle`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from prefect_qiskit_runtime.core.models import FINAL_STATES, PENDING_STATES, JobState
from prefect_qiskit_runtime.server.store.errors import StoreError
from prefect_qiskit_runtime.server.store.idempotency import Answer, IdempotencyStore, read_answer
from prefect_qiskit_runtime.server.store.programs import (
    RUNNABLE_PROGRAM,
    RUNNABLE_PROGRAM_SOURCE,
)
from prefect_qiskit_runtime.server.store.session_tables import JOB_EXTRAS, SESSIONS
from prefect_qiskit_runtime.server.store.tables import (
    IDEMPOTENCY,
    JOB_BY_ID,
    JOB_LIGHT,
    JOBS,
    Job,
    Message,
    job_from_row,
    utcnow,
)

# Hot statements, built once (their compiled form is cached by SQLAlchemy).
_JOB_LIGHT_BY_ID = JOB_LIGHT.where(JOBS.c.id == bindparam("job_id"))
_ANY_QUEUED = select(JOBS.c.n).where(JOBS.c.status == JobState.QUEUED.value).limit(1)


@dataclass(frozen=True)
class ClaimedJob:
    """A job claimed for running, with what the executor needs.

    ``session_id`` names the dedicated session the job belongs to (its jobs share one worker
    process), ``None`` for a job outside one or in a batch.
    """

    job: Job
    program_source: str
    session_id: str | None = None


_DEDICATED = (
    select(JOB_EXTRAS.c.job_id, JOB_EXTRAS.c.session_id)
    .join(SESSIONS, SESSIONS.c.id == JOB_EXTRAS.c.session_id)
    .where(
        JOB_EXTRAS.c.job_id.in_(bindparam("job_ids", expanding=True)),
        SESSIONS.c.mode == "dedicated",
    )
)


def dedicated_sessions(conn: Connection, job_ids: Sequence[str]) -> dict[str, str]:
    """The dedicated session of each of ``job_ids`` that belongs to one (job id -> session id)."""
    if not job_ids:
        return {}
    return {row.job_id: row.session_id for row in conn.execute(_DEDICATED, {"job_ids": job_ids})}


def new_job_id() -> str:
    """Return a fresh job id (20 lowercase hex characters)."""
    return secrets.token_hex(10)


class JobStore(IdempotencyStore):
    """The store's jobs, apart from their status changes."""

    def create_job(
        self,
        *,
        owner_id: str,
        program_id: str,
        backend: str,
        params: str,
        hub: str,
        group: str,
        project: str,
        log_level: str | None,
        runtime: str | None,
        cost: int | None = None,
        idempotency_key: str | None = None,
        scope: str = "POST /runtime/jobs",
        claim_for: str | None = None,
        on_insert: Callable[[Connection, str], None] | None = None,
    ) -> tuple[Answer, ClaimedJob | None]:
        """Queue a job and remember the answer with its idempotency key, in one transaction.

        The same contract as :meth:`idempotent` (a repeated key returns the first answer and
        creates nothing), in SQLAlchemy Core: this is the hottest write.

        With ``claim_for``, and no older job waiting in the queue, the job is created already
        claimed by that instance (RUNNING, as :meth:`claim_jobs` would leave it): a job submitted
        to an idle service skips the queue's round trip.

        Args:
            owner_id: The caller.
            program_id: A program the caller can see.
            backend: Backend name (already checked).
            params: The inputs as JSON text.
            hub: Hub.
            group: Group.
            project: Project.
            log_level: The program's logging level, or ``None``.
            runtime: The image option, or ``None``.
            cost: The job's own execution-time limit; ``None`` takes the program's.
            idempotency_key: The ``Idempotency-Key`` header, or ``None``.
            scope: What the key was used for, kept for diagnostics.
            claim_for: The id of an instance with a free slot for the job.
            on_insert: Called with the connection and the new job's id right after the job row is
                written, in the same transaction: rows that must exist exactly when the job does
                (a modern job's session and tags). An exception it raises creates nothing.

        Returns:
            The answer (``201 {"id", "backend"}``; ``replayed`` when it is the answer of an earlier
            request) and the claimed job when it was created claimed.

        Raises:
            StoreError: ``PROGRAM_NOT_FOUND`` if the program vanished meanwhile.
        """
        key = idempotency_key
        try:
            with self.core_write() as conn:
                if key:
                    stored = read_answer(conn, owner_id, key)
                    if stored is not None:
                        return stored, None
                program = conn.execute(
                    RUNNABLE_PROGRAM if claim_for is None else RUNNABLE_PROGRAM_SOURCE,
                    {"program_id": program_id, "user_id": owner_id},
                ).first()
                if program is None:
                    raise StoreError("PROGRAM_NOT_FOUND", f"Program {program_id!r} not found.")
                now = utcnow()
                values: dict[str, Any] = {
                    "id": new_job_id(),
                    "owner_id": owner_id,
                    "program_id": program_id,
                    "hub": hub,
                    "group_name": group,
                    "project": project,
                    "backend": backend,
                    "status": JobState.QUEUED.value,
                    "params": params,
                    "log_level": log_level,
                    "runtime": runtime,
                    "cost": cost or int(program.cost),
                    "created": now,
                    "message_count": 0,
                }
                claim = claim_for is not None and conn.execute(_ANY_QUEUED).first() is None
                if claim:
                    values.update(status=JobState.RUNNING.value, instance_id=claim_for, started=now)
                conn.execute(JOBS.insert(), values)
                if on_insert is not None:
                    on_insert(conn, values["id"])
                session_id = (
                    dedicated_sessions(conn, [values["id"]]).get(values["id"])
                    if claim and on_insert is not None
                    else None
                )
                answer = Answer(201, {"id": values["id"], "backend": backend})
                if key:
                    conn.execute(
                        IDEMPOTENCY.insert(),
                        {
                            "user_id": owner_id,
                            "key": key,
                            "scope": scope,
                            "status_code": answer.status_code,
                            "body": json.dumps(answer.body),
                            "created": now,
                        },
                    )
            claimed = None
            if claim:
                values["group"] = values.pop("group_name")
                claimed = ClaimedJob(
                    job=Job(**values), program_source=program.data, session_id=session_id
                )
            return answer, claimed
        except IntegrityError as exc:
            return self._answer_after_conflict(owner_id, key, exc), None

    def list_jobs(
        self,
        user_id: str,
        limit: int,
        offset: int,
        pending: bool | None = None,
        program_id: str | None = None,
    ) -> tuple[list[Job], int]:
        """The user's jobs, newest first.

        Args:
            user_id: Owner.
            limit: Page size.
            offset: Jobs to skip.
            pending: True for QUEUED/RUNNING, False for final states, None for all.
            program_id: Only this program's jobs.

        Returns:
            The page and the total number of matching jobs.
        """
        conditions: list[Any] = [Job.owner_id == user_id]
        if pending is True:
            conditions.append(Job.status.in_([st.value for st in PENDING_STATES]))
        elif pending is False:
            conditions.append(Job.status.in_([st.value for st in FINAL_STATES]))
        if program_id is not None:
            conditions.append(Job.program_id == program_id)
        with self.read() as s:
            total = s.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
            rows = s.scalars(
                select(Job).where(*conditions).order_by(Job.n.desc()).offset(offset).limit(limit)
            )
            return list(rows), int(total)

    def get_job(
        self, job_id: str, user_id: str | None = None, *, light: bool = False
    ) -> Job | None:
        """The job, if it exists and (when ``user_id`` is given) belongs to that user.

        Args:
            job_id: The job.
            user_id: Only a job of this owner.
            light: Leave out ``result``, ``error`` and ``logs`` (``None`` on the returned object),
                which status answers do not need and which may be large.

        Returns:
            A detached job, or ``None``.
        """
        with self.core_read() as conn:
            query = _JOB_LIGHT_BY_ID if light else JOB_BY_ID
            row = conn.execute(query, {"job_id": job_id}).first()
        if row is None or (user_id is not None and row.owner_id != user_id):
            return None
        return job_from_row(row)

    def delete_job(self, job_id: str, user_id: str) -> Job | None:
        """Delete a job and its messages in any state.

        Returns:
            The job as it was before deletion, or ``None`` if the user has no such job.
        """
        with self.write() as s:
            job = s.scalars(select(Job).where(Job.id == job_id, Job.owner_id == user_id)).first()
            if job is None:
                return None
            s.execute(delete(Message).where(Message.job_id == job_id))
            s.delete(job)
            return job

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Current status of each existing job among ``job_ids``."""
        if not job_ids:
            return {}
        with self.read() as s:
            rows = s.execute(select(Job.id, Job.status).where(Job.id.in_(list(job_ids))))
            return {job_id: status for job_id, status in rows}

    def status_counts(self) -> dict[str, int]:
        """Number of jobs per status."""
        with self.read() as s:
            rows = s.execute(select(Job.status, func.count()).group_by(Job.status))
            return {status: int(count) for status, count in rows}
