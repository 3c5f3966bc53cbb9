"""Calls into a running job (``WS /runtime/jobs/{id}/channel``): where the job runs, each call.

The executor relays calls over the job's own connection (:mod:`..executors.calls`), so a channel
can be served only by the instance that runs the job; another instance refuses it (409), as does
an executor that relays no calls (Ray).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.server.auth import store_read
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases.errors import InvalidState, JobNotFound

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.executors.base import Executor
    from prefect_qiskit_runtime.server.runtime import Runtime


class JobIsFinal(InvalidState):
    """The job already ended: it takes no more calls (a new job may)."""


#: Longest pause between two looks at a job that has not reached this instance's executor yet.
_LOOK_AGAIN_MAX = 1.0


async def locate(runtime: Runtime, user: User, job_id: str) -> Executor:
    """Wait until the caller's job runs in this instance's executor; that executor.

    A QUEUED job is waited for (the wait ends with the job's start or its end, or when the
    caller goes away); a job just claimed is waited for until it reaches the executor.

    Args:
        runtime: The service instance.
        user: The caller.
        job_id: The job.

    Raises:
        JobNotFound: If the caller has no such job.
        JobIsFinal: If the job is final.
        InvalidState: If the job runs on another instance, or the executor relays no calls.
    """
    pause = 0.005
    while True:
        job = await store_read(runtime.store, runtime.store.get_job, job_id, user.id, light=True)
        if job is None:
            raise JobNotFound(job_id)
        executor = runtime.executor
        if executor is None:
            raise InvalidState("the service is starting: try again")
        if executor.has_job(job_id):
            return executor
        if JobState(job.status).is_final:
            raise JobIsFinal(f"job {job_id} is {job.status}: it takes no calls")
        here = runtime.scheduler.instance_id if runtime.scheduler else None
        if job.status == JobState.RUNNING.value and job.instance_id not in (None, here):
            raise InvalidState(
                f"job {job_id} runs on another instance of the service: its channel is served "
                "there (route the job's channel to that instance)"
            )
        if not executor.relays_calls:
            raise InvalidState(f"the {type(executor).__name__} relays no calls into jobs")
        # Not here yet: queued, or claimed a moment ago and on its way to the executor.
        with runtime.broker.subscribe(job_id) as sub:
            if not executor.has_job(job_id):
                await sub.get(timeout=pause)
        pause = min(pause * 2, _LOOK_AGAIN_MAX)
