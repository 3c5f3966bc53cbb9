"""Service instances sharing the database, and recovery of the jobs of those that are gone."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.store.engine import StoreBase
from prefect_qiskit_runtime.server.store.tables import Instance, Job, utcnow


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
        heartbeat is older than ``lease_seconds``.

        Returns:
            The ids of the jobs that were failed (``SERVICE_RESTARTED``, retryable).
        """
        host = socket.gethostname()
        now = utcnow()
        with self.write() as s:
            instances = {row.id: row for row in s.scalars(select(Instance))}
            dead = {
                iid
                for iid, row in instances.items()
                if iid != instance_id
                and (
                    (row.hostname == host and not _pid_alive(row.pid, row.started))
                    or now - row.heartbeat > timedelta(seconds=lease_seconds)
                )
            }
            running = s.scalars(select(Job).where(Job.status == JobState.RUNNING.value))
            failed: list[str] = []
            for job in running:
                if job.instance_id == instance_id:
                    continue
                if job.instance_id in instances and job.instance_id not in dead:
                    continue
                job.status = JobState.FAILED.value
                job.reason_code = ReasonCode.SERVICE_RESTARTED.value
                job.error = (
                    "The runtime service stopped while this job was running "
                    "(SERVICE_RESTARTED). The job did not finish; it is safe to submit it again."
                )
                job.ended = now
                failed.append(job.id)
            if dead:
                s.execute(delete(Instance).where(Instance.id.in_(dead)))
            return failed
