"""R2: ``kill -9`` of the service while a Prefect flow has jobs queued and running, then a restart.

A flow submits one job per worker slot and more that queue behind it, with the ``run_and_await``
task. The service is killed with SIGKILL mid-run (its warm parent and job processes go with it)
and started again on the same home and port. Nothing stored is lost; the queued jobs run as they
were; the running ones end FAILED with the retryable ``SERVICE_RESTARTED``, and the task's
job-level retry submits one replacement each, so the flow completes with every result.
"""

# Prefect types flows returning Any as possibly coroutines or states.
# mypy: disable-error-code="misc"

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from prefect import flow
from reliability_support import SLEEP_THEN_RETURN, until
from service_helpers import add_user, start_service, stop_service

from prefect_qiskit_runtime.client import RuntimeService
from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend, QiskitRuntimeCredentials
from prefect_qiskit_runtime.prefect.tasks import run_and_await

JOBS = 5


@flow(name="r2-restart")
def restart_flow(backend: QiskitRuntimeBackend, program_id: str, count: int) -> list[Any]:
    """One ``run_and_await`` per input, all submitted at once."""
    futures = [
        run_and_await.submit(backend, program_id, {"x": x, "seconds": 1.5}, stream=False)
        for x in range(count)
    ]
    return [future.result() for future in futures]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_r2_kill_9_with_queued_and_running_jobs(
    tmp_path: Path, prefect_server: str, figures: Callable[..., str]
) -> None:
    home = tmp_path / "home"
    port = str(_free_port())
    first = start_service(home, "--workers", "2", "--port", port)
    token = add_user(home, "alice")
    direct = RuntimeService(first.url, token)
    program_id = direct.upload_program(
        SLEEP_THEN_RETURN, name="r2-sleeper", description="r2", max_execution_time=120
    )
    backend = QiskitRuntimeBackend(
        credentials=QiskitRuntimeCredentials(url=first.url, token=token),
        backend_name="aer_simulator",
        retry_delay_seconds=0,
    )
    outcome: dict[str, Any] = {}

    def run_flow() -> None:
        try:
            outcome["results"] = restart_flow(backend, program_id, JOBS)
        except BaseException as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=run_flow)
    runner.start()
    second = None
    try:

        def queued_and_running() -> dict[str, list[str]] | None:
            by_status: dict[str, list[str]] = {}
            for job in direct.jobs(limit=None, program_id=program_id):
                by_status.setdefault(job.state.value, []).append(job.job_id())
            if len(by_status.get("RUNNING", [])) == 2 and by_status.get("QUEUED"):
                return by_status
            return None

        before = until(queued_and_running, 180, "two running jobs and some queued")
        children = psutil.Process(first.process.pid).children(recursive=True)
        stop_service(first, signal.SIGKILL)
        killed_at = time.monotonic()
        _gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, f"processes of the killed service still run: {alive}"
        second = start_service(home, "--workers", "2", "--port", port)
        restart_seconds = time.monotonic() - killed_at
        runner.join(timeout=300)
        assert not runner.is_alive(), "the flow did not finish"
    finally:
        if second is not None:
            after_jobs = RuntimeService(second.url, token).jobs(limit=None, program_id=program_id)
            stop_service(second)
        else:
            stop_service(first, signal.SIGKILL)
            runner.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["results"] == list(range(JOBS))
    status = {job.job_id(): job for job in after_jobs}
    # Nothing stored was lost: every job seen before the kill is still there.
    assert set(before["RUNNING"]) | set(before["QUEUED"]) <= set(status)
    for job_id in before["RUNNING"]:
        assert status[job_id].state.value == "FAILED"
        assert status[job_id].reason_code.value == "SERVICE_RESTARTED"
        assert status[job_id].retryable is True
    for job_id in before["QUEUED"]:
        assert status[job_id].state.value == "COMPLETED"  # ran as it was, not resubmitted
    replacements = len(status) - JOBS
    assert replacements == len(before["RUNNING"])
    completed = sum(1 for job in after_jobs if job.state.value == "COMPLETED")
    assert completed == JOBS
    figures(
        "R2 kill -9 and restart",
        jobs=JOBS,
        running_at_kill=len(before["RUNNING"]),
        queued_at_kill=len(before["QUEUED"]),
        restart_seconds=round(restart_seconds, 1),
        queued_completed_unchanged=len(before["QUEUED"]),
        running_failed_retryable=len(before["RUNNING"]),
        replaced_by_job_level_retry=replacements,
        flow_results=f"{len(outcome['results'])}/{JOBS}",
        jobs_lost=0,
        duplicate_results=completed - JOBS,
    )
