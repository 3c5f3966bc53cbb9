"""Each task against the real service, with logs, artifacts and events read back from Prefect."""

# Prefect types Block.load, and flows and tasks returning Any, as possibly coroutines or states.
# mypy: disable-error-code="arg-type,has-type,index,misc"

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from prefect_qiskit_runtime.core.exceptions import RuntimeJobFailureError, RuntimeProgramNotFound
from prefect_qiskit_runtime.prefect.tasks import (
    JOB_METRICS_ARTIFACT_KEY,
    alist_programs,
    arun_and_await,
    await_result,
    cancel_job,
    delete_job,
    delete_program,
    get_job,
    list_programs,
    run_and_await,
    run_program,
    upload_program,
)

FAILING_PROGRAM = """
def main(backend, user_messenger, **kwargs):
    user_messenger.publish({"step": "about to fail"})
    return {}["missing-key"]
"""

SLOW_PROGRAM = """
import time

def main(backend, user_messenger, seconds=60):
    for i in range(int(seconds * 10)):
        user_messenger.publish({"iteration": i})
        time.sleep(0.1)
    return "finished"
"""


def _failure(state: Any) -> tuple[type[BaseException] | None, str, Any]:
    """The exception type and message of a task's final state (for assertions outside the flow)."""
    try:
        state.result()
    except BaseException as exc:
        return type(exc), str(exc), state.state_details.task_run_id
    return None, "", state.state_details.task_run_id


def _flow_run_id() -> Any:
    from prefect.runtime import flow_run

    return flow_run.id


def test_run_and_await_streams_into_the_run(backend: Any, poll: Any) -> None:
    """Interim results reach the run log; the job leaves a metrics table and job events."""

    @flow
    def hello() -> dict[str, Any]:
        return {
            "result": run_and_await(backend, "hello-world", {"iterations": 3}),
            "id": _flow_run_id(),
        }

    out = hello()
    assert out["result"] == "All done!"
    run_id = out["id"]

    with get_client(sync_client=True) as client:

        def interim_lines() -> list[str]:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )
            return [log.message for log in logs if "interim result" in log.message]

        lines = poll(lambda: len(interim_lines()) == 3 and interim_lines(), what="3 log lines")
        assert all("\n" not in line and len(line) < 300 for line in lines)
        assert "'iteration': 0" in lines[0] and "'iteration': 2" in lines[2]

        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
        tables = [a for a in artifacts if a.key == JOB_METRICS_ARTIFACT_KEY]
        assert len(tables) == 1
        data = tables[0].data
        rows = json.loads(data) if isinstance(data, str) else data
        assert len(rows) == 1
        row = rows[0]
        assert (row["program_id"], row["status"], row["backend"]) == (
            "hello-world",
            "COMPLETED",
            "aer_simulator",
        )
        assert row["queue_seconds"] >= 0 and row["run_seconds"] > 0 and row["interim_results"] == 3
        assert row["created"] <= row["started"] <= row["finished"]
        url = f"{backend.credentials.url.rstrip('/')}/runtime/jobs/{row['job_id']}"
        assert row["url"] == url and row["attempt"] == 1
        links = [a for a in artifacts if a.type == "markdown"]  # Prefect's type for a link
        assert [a.data for a in links] == [f"[Runtime job {row['job_id']}]({url})"]
        assert links[0].task_run_id is not None  # on the job's task run, not only the flow run
        progress = [a for a in artifacts if a.type == "progress"]
        assert [a.data for a in progress] == [100.0]
        job_id = row["job_id"]

        def job_events() -> list[str]:
            page = client.read_events(
                filter=EventFilter(
                    event=EventNameFilter(prefix=["prefect-qiskit-runtime.job."]),
                    resource=EventResourceFilter(id=[f"prefect-qiskit-runtime.job.{job_id}"]),
                ),
                limit=50,
            )
            return sorted(e.event for e in page.events)

        names = poll(
            lambda: "prefect-qiskit-runtime.job.completed" in job_events() and job_events(),
            what="job events",
        )
        assert "prefect-qiskit-runtime.job.submitted" in names
        # Three interim results within well under a second: throttled to one event.
        assert names.count("prefect-qiskit-runtime.job.interim-result") <= 2


def test_program_lifecycle_tasks(backend: Any, runtime: Any) -> None:
    """upload, list, run, await, get, delete job, delete program, each as a task."""

    @flow
    def lifecycle() -> dict[str, Any]:
        program_id = upload_program(
            backend,
            SLOW_PROGRAM,
            {"name": "prefect-lifecycle", "description": "test", "max_execution_time": 120},
            exist_ok=True,
        )
        names = [p["name"] for p in list_programs(backend)]
        job_id = run_program(backend, program_id, {"seconds": 0.3})
        result = await_result(backend, job_id)
        info = get_job(backend, job_id)
        delete_job(backend, job_id)
        delete_program(backend, program_id)
        return {"program_id": program_id, "names": names, "result": result, "info": info}

    out = lifecycle()
    assert "prefect-lifecycle" in out["names"] and "hello-world" in out["names"]
    assert out["result"] == "finished"
    assert out["info"]["status"] == "COMPLETED" and out["info"]["message_count"] == 3
    assert out["info"]["run_seconds"] >= 0.3
    with pytest.raises(RuntimeProgramNotFound):
        runtime.program(out["program_id"], refresh=True)


def test_upload_exist_ok_updates_the_program(backend: Any, runtime: Any) -> None:
    meta = {"name": "prefect-exist-ok", "description": "v1", "max_execution_time": 60}

    @flow
    def twice() -> tuple[str, str]:
        first = upload_program(backend, SLOW_PROGRAM, meta, exist_ok=True)
        second = upload_program(
            backend, SLOW_PROGRAM.replace("finished", "v2"), meta, exist_ok=True
        )
        return first, second

    first, second = twice()
    try:
        assert first == second
        assert "v2" in runtime.program(first, refresh=True).data
    finally:
        runtime.delete_program(first)


def test_program_exception_fails_at_once_with_traceback(backend: Any, task_run_in_api: Any) -> None:
    @flow
    def failing() -> Any:
        program_id = upload_program(
            backend,
            FAILING_PROGRAM,
            {"name": "prefect-failing", "description": "raises", "max_execution_time": 60},
            exist_ok=True,
        )
        state = run_and_await.with_options(retries=3, retry_delay_seconds=0)(
            backend, program_id, return_state=True
        )
        return _failure(state)

    failed, message, task_run_id = failing()
    assert failed is RuntimeJobFailureError
    assert "KeyError" in message and "missing-key" in message and "Traceback" in message
    task_run = task_run_in_api(task_run_id)
    assert task_run.state.is_failed()
    assert task_run.run_count == 1  # no Prefect retry for the program's own exception


def test_cancel_job_task(backend: Any, runtime: Any, poll: Any) -> None:
    @flow
    def start_and_cancel() -> tuple[str, str, str]:
        program_id = upload_program(
            backend,
            SLOW_PROGRAM,
            {"name": "prefect-slow", "description": "sleeps", "max_execution_time": 120},
            exist_ok=True,
        )
        job_id = run_program(backend, program_id, {"seconds": 60})
        poll(lambda: runtime.job(job_id).status().name == "RUNNING", what="job running")
        first = cancel_job(backend, job_id)
        again = cancel_job(backend, job_id)  # already ended: left as it is
        return job_id, first, again

    job_id, first, again = start_and_cancel()
    assert (first, again) == ("CANCELLED", "CANCELLED")
    assert runtime.job(job_id).state.value == "CANCELLED"


def test_task_timeout_cancels_the_job(backend: Any, runtime: Any) -> None:
    """No orphans: a task that times out cancels the runtime job it was waiting for."""
    before = {j.job_id() for j in runtime.jobs(limit=None)}

    @flow
    def times_out() -> Any:
        program_id = upload_program(
            backend,
            SLOW_PROGRAM,
            {"name": "prefect-slow", "description": "sleeps", "max_execution_time": 120},
            exist_ok=True,
        )
        state = run_and_await.with_options(timeout_seconds=3, retries=0)(
            backend, program_id, {"seconds": 60}, return_state=True
        )
        return _failure(state)

    started = time.monotonic()
    failed, message, _ = times_out()
    assert issubclass(failed, TimeoutError), message
    assert time.monotonic() - started < 50  # not the 60 s the program would take
    new = [j for j in runtime.jobs(limit=None) if j.job_id() not in before]
    assert len(new) == 1
    assert new[0].state.value == "CANCELLED"


def test_backend_max_execution_time_cancels_a_long_job(backend: Any, runtime: Any) -> None:
    limited = backend.model_copy(update={"max_execution_time": 2})
    before = {j.job_id() for j in runtime.jobs(limit=None)}

    @flow
    def too_long() -> Any:
        program_id = upload_program(
            limited,
            SLOW_PROGRAM,
            {"name": "prefect-slow", "description": "sleeps", "max_execution_time": 120},
            exist_ok=True,
        )
        return _failure(run_and_await(limited, program_id, {"seconds": 60}, return_state=True))

    failed, message, _ = too_long()
    assert failed is RuntimeJobFailureError and "maximum execution time" in message
    new = [j for j in runtime.jobs(limit=None) if j.job_id() not in before]
    # The service enforced the block's limit (2 s), not the program's own (120 s).
    assert len(new) == 1 and new[0].state.value == "CANCELLED - RAN TOO LONG"


def test_async_twins(backend: Any) -> None:
    @flow
    async def async_flow() -> tuple[Any, list[str]]:
        result, programs = await asyncio.gather(
            arun_and_await(backend, "hello-world", {"iterations": 1}),
            alist_programs(backend),
        )
        return result, [p["name"] for p in programs]

    result, names = asyncio.run(async_flow())
    assert result == "All done!"
    assert "estimator" in names


def test_async_task_timeout_cancels_the_job(backend: Any, runtime: Any) -> None:
    before = {j.job_id() for j in runtime.jobs(limit=None)}

    @flow
    async def async_times_out() -> Any:
        state = await arun_and_await.with_options(timeout_seconds=3, retries=0)(
            backend, "hello-world", {"iterations": 100000}, return_state=True
        )
        try:
            await state.aresult()
        except BaseException as exc:
            return type(exc), str(exc), None
        return None, "", None

    failed, message, _ = asyncio.run(async_times_out())
    assert issubclass(failed, TimeoutError), message
    new = [j for j in runtime.jobs(limit=None) if j.job_id() not in before]
    assert len(new) == 1 and new[0].state.value == "CANCELLED"
