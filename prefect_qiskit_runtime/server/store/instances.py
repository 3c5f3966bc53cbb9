"""Service instances sharing the database, and recovery of the jobs of those that are gone."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.states import FINISH, change_status
from prefect_qiskit_runtime.server.store.tables import INSTANCES, JOBS, Instance, utcnow

_RESTARTED = (
    "The runtime service stopped while this job was running "
    "(SERVICE_RESTARTED). The job did not finish; it is safe to submit it again."
)


def _pid_alive(pid: int, since: datetime) -> bool:
    """Whether ``pid`` is a live process that existed at ``since`` (guards against pid reuse)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= since.timestamp() + 2.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class InstanceStore(StoreBase):
    """The store's record of service instances."""

    def register_instance(self, instance_id: str) -> None:
        """Record this service instance (its jobs are failed by others when it dies)."""
        with self.write() as s:
            s.merge(
                Instance(
                    id=instance_id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    started=utcnow(),
                    heartbeat=utcnow(),
                )
            )

    def heartbeat(self, instance_id: str) -> None:
        """Refresh this instance's lease."""
        with self.write() as s:
            s.execute(update(Instance).where(Instance.id == instance_id).values(heartbeat=utcnow()))

    def remove_instance(self, instance_id: str) -> None:
        """Forget this instance (on a clean shutdown)."""
        with self.write() as s:
            s.execute(delete(Instance).where(Instance.id == instance_id))

    def recover(self, instance_id: str, lease_seconds: float = 60.0) -> list[str]:
        """Fail the RUNNING jobs of service instances that are gone.

        An instance is gone when it ran on this host and its process no longer exists, or when its
        heartbeat is older than ``lease_seconds``. A job whose instance was never recorded counts
        as one of a gone instance.

        Args:
            instance_id: This instance (its own jobs are never failed).
            lease_seconds: How old a heartbeat may be.

        Returns:
            The ids of the jobs that were failed (``SERVICE_RESTARTED``, retryable).
        """
        host = socket.gethostname()
        now = utcnow()
        with self.core_write() as conn:
            instances = conn.execute(select(INSTANCES)).all()
            dead = {
                row.id
                for row in instances
                if row.id != instance_id
                and (
                    (row.hostname == host and not _pid_alive(row.pid, row.started))
                    or now - row.heartbeat > timedelta(seconds=lease_seconds)
                )
            }
            alive = sorted(({row.id for row in instances} - dead) | {instance_id})
            orphans = conn.execute(
                select(JOBS.c.id)
                .where(
                    JOBS.c.status == JobState.RUNNING.value,
                    or_(JOBS.c.instance_id.is_(None), JOBS.c.instance_id.not_in(alive)),
                )
                .order_by(JOBS.c.n)
            ).scalars()
            failure = {"reason_code": ReasonCode.SERVICE_RESTARTED.value, "error": _RESTARTED}
            # Each one only if it is still RUNNING: it may have finished since it was listed.
            failed = [
                job_id
                for job_id in list(orphans)
                if change_status(
                    conn, FINISH, JobState.FAILED, job_id, {**failure, "ended": now}
                ).won
            ]
            if dead:
                conn.execute(delete(INSTANCES).where(INSTANCES.c.id.in_(dead)))
            return failed
