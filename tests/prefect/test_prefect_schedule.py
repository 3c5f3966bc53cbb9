"""A served deployment's schedule really produces runs, on a Prefect server with its services.

``prefect_test_harness`` runs an ephemeral server, which has no scheduler; this test starts a full
``prefect server start`` of its own (about 20 s), serves a deployment with an interval schedule and
waits for scheduled runs to be created and to complete. Prefect 3.8.8's scheduler cannot insert
runs with SQLAlchemy 2.1 (``Can't evaluate bulk DML statement``), so this test guards the pin.
"""

# Prefect types flows returning Any as possibly coroutines or states.
# mypy: disable-error-code="misc"

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.runner import Runner
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_helpers import full_prefect_server


@flow(name="schedule-tick")
def tick() -> int:
    """The scheduled flow: nothing but a run to count."""
    return 1


@pytest.fixture(scope="module")
def full_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``prefect server start`` with every service on, in its own home; yields its API URL."""
    # The scheduler looks at recently changed deployments every this many seconds.
    env = {"PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1"}
    with full_prefect_server(tmp_path_factory.mktemp("prefect-full-server"), env=env) as url:
        yield url


async def test_a_served_interval_schedule_creates_runs_that_complete(full_server: str) -> None:
    with temporary_settings({PREFECT_API_URL: full_server}):
        deployment = await asyncio.to_thread(tick.to_deployment, "every-2-seconds", interval=2)
        runner = Runner(query_seconds=1, limit=2)
        deployment_id = await runner.aadd_deployment(deployment)
        serving = asyncio.create_task(runner.start())
        only_ours = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        try:
            completed: list[Any] = []
            scheduled: list[Any] = []
            async with get_client() as client:
                for _ in range(600):  # bounded: at most 120 s of polling the API
                    runs = await client.read_flow_runs(deployment_filter=only_ours)
                    scheduled = [r for r in runs if r.auto_scheduled]
                    completed = [r for r in scheduled if r.state and r.state.is_completed()]
                    if len(completed) >= 2:
                        break
                    await asyncio.sleep(0.2)  # polling the API with a deadline; no event to await
            assert len(completed) >= 2, [(r.name, r.state_name) for r in scheduled]
            assert all(r.deployment_id == deployment_id for r in completed)
        finally:
            await runner.astop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(serving, 60)
