"""This instance among the others on its database: heartbeats, recovery, remote cancels.

Each instance records itself in the store and renews a lease every
:attr:`~prefect_qiskit_runtime.server.config.ServiceConfig.heartbeat_seconds`. At start-up and at
every heartbeat it fails the RUNNING jobs of instances that are gone (``store.recover``: the process
is gone on this host, or the lease ran out), so their clients retry them. Every second it checks
whether a job it runs was cancelled or deleted through another instance, and kills it; on
PostgreSQL the relay makes that check immediate (:meth:`Instances.check_soon`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from prefect_qiskit_runtime.core.models import JobState

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.scheduler import Scheduler

logger = logging.getLogger("prefect_qiskit_runtime.server.scheduler")

#: Seconds between two reconciliations of the jobs this instance runs with the store.
RECONCILE_SECONDS = 1.0


class Instances:
    """The housekeeping one scheduler does for the instances sharing its database.

    Args:
        scheduler: The scheduler whose running jobs and store this looks after.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def join(self) -> list[str]:
        """Record this instance and fail the running jobs of instances that are gone.

        Returns:
            Ids of the jobs failed (``SERVICE_RESTARTED``).
        """
        scheduler = self.scheduler
        await asyncio.to_thread(scheduler.store.register_instance, scheduler.instance_id)
        return await self._recover()

    async def keep(self) -> None:
        """Reconcile every second and heartbeat (and recover) until the scheduler stops."""
        scheduler = self.scheduler
        last_beat = 0.0
        while not scheduler.stopping:
            await asyncio.sleep(RECONCILE_SECONDS)
            try:
                await self.reconcile()
                if time.monotonic() - last_beat >= scheduler.config.heartbeat_seconds:
                    last_beat = time.monotonic()
                    await asyncio.to_thread(scheduler.store.heartbeat, scheduler.instance_id)
                    for job_id in await self._recover():
                        scheduler.broker.publish_final(job_id, JobState.FAILED.value)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("housekeeping failed; retrying")

    async def _recover(self) -> list[str]:
        scheduler = self.scheduler
        return await asyncio.to_thread(
            scheduler.store.recover, scheduler.instance_id, scheduler.config.lease_seconds
        )

    def check_soon(self, job_id: str) -> None:
        """Check at once whether a job this instance runs was ended by another instance.

        Called on the event loop by the relay when another replica announces the end of a job
        (its cancel or delete): the worker stops now rather than at the next reconciliation.

        Args:
            job_id: The job another instance ended.
        """
        if job_id not in self.scheduler.running:
            return

        async def check() -> None:
            try:
                await self.reconcile([job_id])
            except Exception:  # the next reconciliation tries again
                logger.exception("checking job %s failed", job_id)

        self.scheduler.spawn(check())

    async def reconcile(self, only: list[str] | None = None) -> None:
        """Kill the jobs (all, or ``only``) this instance runs that another one ended."""
        running = self.scheduler.running
        ids = [job_id for job_id in (only or list(running)) if job_id in running]
        if not ids:
            return
        statuses = await asyncio.to_thread(self.scheduler.store.job_statuses, ids)
        for job_id in ids:
            if job_id in running and statuses.get(job_id) != JobState.RUNNING.value:
                await self.scheduler.kill(job_id)


__all__ = ["Instances"]
