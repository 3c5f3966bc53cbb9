"""A job's status changes after submission: claim, finish, the watchdog's end and cancel.

Each goes through :func:`.states.change_status`, so it takes effect only from the statuses the
state machine allows and tells its caller whether it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, select, update

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.jobs import ClaimedJob
from prefect_qiskit_runtime.server.store.states import (
    CANCEL,
    CLAIM,
    FINISH,
    REJECT,
    change_status,
)
from prefect_qiskit_runtime.server.store.tables import (
    JOB_BY_ID,
    JOB_LIGHT,
    JOBS,
    PROGRAMS,
    Job,
    job_from_row,
    utcnow,
)

_CLAIMABLE = (
    JOB_LIGHT.where(JOBS.c.status == JobState.QUEUED.value)
    .order_by(JOBS.c.n)
    .limit(bindparam("limit", type_=Integer))
)
_CLAIMABLE_SKIP_LOCKED = _CLAIMABLE.with_for_update(skip_locked=True)
_SOURCES = select(PROGRAMS.c.id, PROGRAMS.c.data).where(
    PROGRAMS.c.id.in_(bindparam("program_ids", expanding=True))
)
_STATUS_AND_END = select(JOBS.c.status, JOBS.c.ended).where(JOBS.c.id == bindparam("job_id"))


def _storable(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL, which a program may well print: its job's end would never
    # be written. Every database stores the same replacement character.
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


@dataclass(frozen=True)
class FinishOutcome:
    """What :meth:`Store.finish_job` did."""

    applied: bool
    """The job was RUNNING and now has the given final status."""
    exists: bool
    """The job still exists (it may have been deleted while running)."""
    status: str | None
    """The job's status after the call."""
    job: Job | None = None
    """The job as stored by the call, when it was applied and the database returns rows."""


class LifecycleStore(StoreBase):
    """The store's job status changes after submission."""

    def cancel_job(self, job_id: str, user_id: str) -> tuple[Job | None, bool]:
        """Cancel a QUEUED or RUNNING job of ``user_id``.

        Of a cancel and a finish (or the watchdog) racing on one job, exactly one takes effect:
        the loser sees the winner's final status.

        Args:
            job_id: The job.
            user_id: Its owner (another user's job is not found).

        Returns:
            ``(job, changed)``: the job after the call (``None`` if not found) and whether it was
            cancelled by this call (False: it was already final).
        """
        values = {"reason_code": ReasonCode.CANCELLED_BY_USER.value, "ended": utcnow()}
        with self.core_write() as conn:
            change = change_status(
                conn,
                CANCEL,
                JobState.CANCELLED,
                job_id,
                values,
                owner_id=user_id,
                returning=True,
            )
            row = change.row
            if row is None:
                # Lost (or won where an UPDATE returns no rows): the job as it is now.
                row = conn.execute(JOB_BY_ID, {"job_id": job_id}).first()
        if row is None or row.owner_id != user_id:
            return None, False
        return job_from_row(row), change.won

    def claim_jobs(self, instance_id: str, limit: int) -> list[ClaimedJob]:
        """Move up to ``limit`` QUEUED jobs (oldest first) to RUNNING for this instance.

        Safe with several instances on one database: PostgreSQL skips rows another instance has
        locked; SQLite's write lock makes the whole claim one serial step. Either way a job that
        is no longer QUEUED when its turn comes (cancelled meanwhile) is left alone.

        Args:
            instance_id: The claiming service instance.
            limit: At most this many jobs (its free slots).

        Returns:
            The claimed jobs with their programs' sources, oldest first.
        """
        if limit <= 0:
            return []
        query = _CLAIMABLE_SKIP_LOCKED if self._skip_locked else _CLAIMABLE
        claimed: list[ClaimedJob] = []
        with self.core_write() as conn:
            rows = conn.execute(query, {"limit": limit}).all()
            if not rows:
                return []
            program_ids = sorted({row.program_id for row in rows})
            sources: dict[str, str] = {
                pid: data for pid, data in conn.execute(_SOURCES, {"program_ids": program_ids})
            }
            now = utcnow()
            start = {"instance_id": instance_id, "started": now}
            for row in rows:
                job = job_from_row(row)
                source = sources.get(job.program_id)
                if source is None:
                    # Deleted between submission and dispatch: nothing left to run.
                    failure = {
                        **start,
                        "reason_code": ReasonCode.PROGRAM_ERROR.value,
                        "error": f"Program {job.program_id!r} was deleted before the job started.",
                        "ended": now,
                    }
                    change_status(conn, REJECT, JobState.FAILED, job.id, failure)
                elif change_status(conn, CLAIM, JobState.RUNNING, job.id, start).won:
                    job.status = JobState.RUNNING.value
                    job.instance_id, job.started = instance_id, now
                    claimed.append(ClaimedJob(job=job, program_source=source))
        return claimed

    def finish_job(
        self,
        job_id: str,
        status: JobState,
        *,
        reason_code: ReasonCode | None = None,
        result: str | None = None,
        error: str | None = None,
        logs: str | None = None,
    ) -> FinishOutcome:
        """Record how a RUNNING job ended, unless it already ended (cancelled, ran too long).

        Logs are stored in every case, so a cancelled job keeps what it printed. NUL characters
        in the texts are stored as U+FFFD (PostgreSQL refuses them).

        Args:
            job_id: The job.
            status: Its final status.
            reason_code: Why it failed or was cancelled.
            result: The result's JSON text (COMPLETED).
            error: The error message.
            logs: What the program printed, or ``None`` to keep the stored logs.

        Returns:
            What was done.

        Raises:
            ValueError: If ``status`` is not final.
        """
        now = utcnow()
        logs = _storable(logs)
        values: dict[str, Any] = {
            "reason_code": reason_code.value if reason_code else None,
            "result": _storable(result),
            "error": _storable(error),
            "ended": now,
        }
        if logs is not None:
            values["logs"] = logs
        with self.core_write() as conn:
            # The stored job comes back with the update where the database allows: waiters get it
            # with the event.
            change = change_status(conn, FINISH, status, job_id, values, returning=True)
            if change.won:
                job = None if change.row is None else job_from_row(change.row)
                return FinishOutcome(applied=True, exists=True, status=status.value, job=job)
            row = conn.execute(_STATUS_AND_END, {"job_id": job_id}).first()
            if row is None:
                return FinishOutcome(applied=False, exists=False, status=None)
            # Not a status change: what the lost run printed, and an end time if none was set.
            changes: dict[str, Any] = {}
            if logs is not None:
                changes["logs"] = logs
            if row.ended is None:
                changes["ended"] = now
            if changes:
                conn.execute(update(JOBS).where(JOBS.c.id == job_id).values(changes))
            return FinishOutcome(applied=False, exists=True, status=row.status)

    def end_running_job(
        self, job_id: str, status: JobState, reason_code: ReasonCode, error: str
    ) -> bool:
        """Move a RUNNING job to a final status at once (the watchdog's path, a clean stop).

        Args:
            job_id: The job.
            status: Its final status.
            reason_code: Why it ended.
            error: The error message.

        Returns:
            Whether the job was RUNNING (and so now has ``status``).

        Raises:
            ValueError: If ``status`` is not final.
        """
        values = {"reason_code": reason_code.value, "error": error, "ended": utcnow()}
        with self.core_write() as conn:
            return change_status(conn, FINISH, status, job_id, values).won
