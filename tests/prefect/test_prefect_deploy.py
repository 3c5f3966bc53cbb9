"""Deployments from ``flows/deploy.py`` served by a runner; cancelling a run cancels its job."""

# Prefect types Block.load, and flows and tasks returning Any, as possibly coroutines or states.
# mypy: disable-error-code="misc"

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from prefect import get_client
from prefect.deployments import run_deployment
from prefect.runner import Runner
from prefect.states import Cancelling

LONG = 1_000_000  # hello-world iterations: far longer than the test waits


def test_deployments_have_schedules(flows_on_path: Any) -> None:
    import deploy

    deployments = {d.name: d for d in deploy.deployments(backend_block="my-backend")}
    assert set(deployments) == {"every-15-minutes", "nightly", "weekly", "on-demand"}
    assert deployments["every-15-minutes"].schedules and deployments["nightly"].schedules
    assert not deployments["on-demand"].schedules
    assert all(d.parameters == {"backend_block": "my-backend"} for d in deployments.values())
    assert str(deployments["nightly"].entrypoint).endswith("vqe.py:vqe")


async def test_served_deployment_runs_and_its_cancellation_cancels_the_job(
    flows_on_path: Any, saved_backend: str, runtime: Any, poll: Any
) -> None:
    import deploy

    # Built on a thread: in async code `to_deployment` would hand back a coroutine.
    health = (await asyncio.to_thread(deploy.deployments, saved_backend))[0]
    runner = Runner(query_seconds=1, limit=4)
    await runner.aadd_deployment(health)
    serving = asyncio.create_task(runner.start())
    name = f"{deploy.runtime_health_check.name}/{health.name}"
    try:
        done = await run_deployment(name, parameters={"iterations": 2}, timeout=300)
        assert done.state is not None and done.state.is_completed(), done.state

        started = time.time()
        flow_run = await run_deployment(name, parameters={"iterations": LONG}, timeout=0)

        def long_job_running() -> Any:
            for job in runtime.jobs(limit=20, program_id="hello-world"):
                created = job.creation_date
                if (
                    job.inputs.get("iterations") == LONG
                    and created is not None
                    and created.timestamp() >= started - 5
                    and job.state is not None
                    and job.state.value == "RUNNING"
                ):
                    return job
            return None

        job = await asyncio.to_thread(poll, long_job_running, 240, "the long job to run")
        async with get_client() as client:
            await client.set_flow_run_state(flow_run.id, Cancelling(), force=True)

        def job_cancelled() -> bool:
            return runtime.job(job.job_id()).state.value == "CANCELLED"

        await asyncio.to_thread(poll, job_cancelled, 120, "the runtime job to be cancelled")

        async def flow_run_state() -> Any:
            async with get_client() as client:
                return (await client.read_flow_run(flow_run.id)).state

        for _ in range(600):
            state = await flow_run_state()
            if state is not None and state.is_cancelled():
                break
            await asyncio.sleep(0.2)  # polling the API with a deadline; no event to await
        assert state is not None and state.is_cancelled(), state
    finally:
        await runner.astop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, 60)
