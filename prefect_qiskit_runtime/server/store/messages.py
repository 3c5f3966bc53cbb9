"""Interim messages of a job, numbered without gaps, and the plain stream's delivery cursor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import Integer, bindparam, select, update

from prefect_qiskit_runtime.server.store.engine import StoreBase, rowcount
from prefect_qiskit_runtime.server.store.tables import JOBS, MESSAGES, Job, utcnow

_BUMP_MESSAGES = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"))
    .values(message_count=JOBS.c.message_count + bindparam("count", type_=Integer))
)
_BUMP_MESSAGES_RETURNING = _BUMP_MESSAGES.returning(JOBS.c.message_count)


class MessageStore(StoreBase):
    """The store's interim messages."""

    def add_message(self, job_id: str, data: str) -> int | None:
        """Store one interim message with the job's next sequence number.

        Returns:
            The sequence number, or ``None`` if the job no longer exists.
        """
        return self.add_messages(job_id, [data])

    def add_messages(self, job_id: str, data: Sequence[str]) -> int | None:
        """Store interim messages in one transaction, numbered on from the job's last one.

        The job's ``message_count`` moves by ``len(data)`` in the same transaction, so the numbers
        stay contiguous even with several writers (the row update serialises them).

        Args:
            job_id: The job.
            data: The messages' JSON texts, in publish order.

        Returns:
            The sequence number of the first message (the others follow without gaps), or
            ``None`` if the job no longer exists or ``data`` is empty.
        """
        if not data:
            return None
        count = len(data)
        args = {"job_id": job_id, "count": count}
        with self.core_write() as conn:
            last: int | None
            if self._update_returning:
                last = conn.execute(_BUMP_MESSAGES_RETURNING, args).scalar()
            elif rowcount(conn.execute(_BUMP_MESSAGES, args)):
                last = conn.execute(
                    select(JOBS.c.message_count).where(JOBS.c.id == job_id)
                ).scalar()
            else:
                last = None
            if last is None:
                return None
            first = int(last) - count + 1
            now = utcnow()
            conn.execute(
                MESSAGES.insert(),
                [
                    {"job_id": job_id, "seq": first + i, "data": text, "created": now}
                    for i, text in enumerate(data)
                ],
            )
            return first

    def messages_after(self, job_id: str, after: int, limit: int = 1000) -> list[tuple[int, str]]:
        """Stored messages with ``seq > after``, in order."""
        with self.core_read() as conn:
            rows = conn.execute(
                select(MESSAGES.c.seq, MESSAGES.c.data)
                .where(MESSAGES.c.job_id == job_id, MESSAGES.c.seq > after)
                .order_by(MESSAGES.c.seq)
                .limit(limit)
            )
            return [(seq, data) for seq, data in rows]

    def open_plain_cursor(self, job_id: str, grace_seconds: float) -> int | None:
        """Start a plain stream connection: return the delivery cursor.

        The first plain connection of a job that ended more than ``grace_seconds`` ago gets no
        replay: its cursor is moved past every message.

        Returns:
            The cursor (last delivered sequence number), or ``None`` if the job is gone.
        """
        with self.write() as s:
            job = s.scalars(select(Job).where(Job.id == job_id)).first()
            if job is None:
                return None
            if job.plain_cursor is None:
                stale = (
                    job.is_final
                    and job.ended is not None
                    and utcnow() - job.ended > timedelta(seconds=grace_seconds)
                )
                job.plain_cursor = job.message_count if stale else 0
            return job.plain_cursor

    def advance_plain_cursor(self, job_id: str, seq: int) -> bool:
        """Claim message ``seq`` for plain delivery (compare-and-set from ``seq - 1``).

        Returns:
            True if this caller now owns the delivery of ``seq``.
        """
        with self.core_write() as conn:
            changed = rowcount(
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id, JOBS.c.plain_cursor == seq - 1)
                    .values(plain_cursor=seq)
                )
            )
        return bool(changed)

    def rewind_plain_cursor(self, job_id: str, seq: int) -> None:
        """Give message ``seq`` back after its frame could not be sent."""
        with self.write() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.plain_cursor == seq)
                .values(plain_cursor=seq - 1)
            )
