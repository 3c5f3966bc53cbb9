"""A job's status changes after submission: claim, finish, the watchdog's end and cancel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Text, bindparam, select, update

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.store.engine import StoreBase, rowcount
from prefect_qiskit_runtime.server.store.jobs import ClaimedJob
from prefect_qiskit_runtime.server.store.tables import (
    JOB_LIGHT,
    JOBS,
    PROGRAMS,
    Job,
    UTCDateTime,
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
_MARK_RUNNING = (
    update(JOBS)
    .where(JOBS.c.n.in_(bindparam("ns", expanding=True)))
    .values(
        status=JobState.RUNNING.value,
        instance_id=bindparam("instance"),
        started=bindparam("now", type_=UTCDateTime),
    )
)
_FINISH_FIELDS = ("status", "reason_code", "result", "error", "ended")
_FINISH = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"), JOBS.c.status == JobState.RUNNING.value)
    .values({name: bindparam(f"new_{name}", type_=JOBS.c[name].type) for name in _FINISH_FIELDS})
)
_FINISH_WITH_LOGS = _FINISH.values(logs=bindparam("new_logs", type_=Text))
_FINISH_RETURNING = _FINISH.returning(*JOBS.c)
_FINISH_WITH_LOGS_RETURNING = _FINISH_WITH_LOGS.returning(*JOBS.c)


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
        """Cancel a QUEUED or RUNNING job.

        Returns:
            ``(job, changed)``: the job after the call (``None`` if not found) and whether it was
            cancelled by this call (False: it was already final).
        """
        with self.write() as s:
            job = s.scalars(select(Job).where(Job.id == job_id, Job.owner_id == user_id)).first()
            if job is None:
                return None, False
            if job.is_final:
                return job, False
            job.status = JobState.CANCELLED.value
            job.reason_code = ReasonCode.CANCELLED_BY_USER.value
            job.ended = utcnow()
            return job, True

    def claim_jobs(self, instance_id: str, limit: int) -> list[ClaimedJob]:
        """Move up to ``limit`` QUEUED jobs (oldest first) to RUNNING for this instance.

        Safe with several instances on one database: PostgreSQL skips rows another instance has
        locked; SQLite's write lock makes the whole claim one serial step.
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
            running: list[int] = []
            for row in rows:
                job = job_from_row(row)
                job.instance_id = instance_id
                job.started = now
                source = sources.get(job.program_id)
                if source is None:
                    # Deleted between submission and dispatch: nothing left to run.
                    job.status = JobState.FAILED.value
                    job.reason_code = ReasonCode.PROGRAM_ERROR.value
                    job.error = f"Program {job.program_id!r} was deleted before the job started."
                    job.ended = now
                    conn.execute(
                        update(JOBS)
                        .where(JOBS.c.n == job.n)
                        .values(
                            status=job.status,
                            reason_code=job.reason_code,
                            error=job.error,
                            instance_id=instance_id,
                            started=now,
                            ended=now,
                        )
                    )
                    continue
                job.status = JobState.RUNNING.value
                running.append(job.n)
                claimed.append(ClaimedJob(job=job, program_source=source))
            if running:
                conn.execute(_MARK_RUNNING, {"ns": running, "instance": instance_id, "now": now})
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
        """Record how a job ended, unless it already ended (cancelled, ran too long).

        Logs are stored in every case, so a cancelled job keeps what it printed.

        Returns:
            What was done.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "job_id": job_id,
            "new_status": status.value,
            "new_reason_code": reason_code.value if reason_code else None,
            "new_result": result,
            "new_error": error,
            "new_ended": now,
        }
        if logs is not None:
            values["new_logs"] = logs
        with self.core_write() as conn:
            # One conditional update in the usual case; the status test makes it safe against a
            # cancel committed meanwhile, by this or another instance.
            if self._update_returning:
                # The stored job comes back with the update: waiters get it with the event.
                query = _FINISH_RETURNING if logs is None else _FINISH_WITH_LOGS_RETURNING
                row = conn.execute(query, values).first()
                if row is not None:
                    job = job_from_row(row)
                    return FinishOutcome(applied=True, exists=True, status=job.status, job=job)
            elif rowcount(conn.execute(_FINISH if logs is None else _FINISH_WITH_LOGS, values)):
                return FinishOutcome(applied=True, exists=True, status=status.value)
            row = conn.execute(
                select(JOBS.c.status, JOBS.c.ended).where(JOBS.c.id == job_id)
            ).first()
            if row is None:
                return FinishOutcome(applied=False, exists=False, status=None)
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
        """Move a RUNNING job to a final status at once (the watchdog's path).

        Returns:
            Whether the job was RUNNING.
        """
        with self.write() as s:
            changed = rowcount(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobState.RUNNING.value)
                    .values(
                        status=status.value,
                        reason_code=reason_code.value,
                        error=error,
                        ended=utcnow(),
                    )
                )
            )
        return bool(changed)
