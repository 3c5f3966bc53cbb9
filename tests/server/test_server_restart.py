"""Nothing is lost across a crash: kill -9 the service with queued and running jobs, restart it on
the same home, and find every program, job, result, log and message again; queued jobs run, running
ones end FAILED with the retryable reason SERVICE_RESTARTED."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
from server_helpers import LOGGING, PUBLISHER, SLEEPER, Api, make_api
from service_helpers import start_service, stop_service


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_kill_9_and_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = start_service(home, "--workers", "1")
    try:
        api = make_api(first, "restart-user")
        publisher = api.upload(PUBLISHER, "restart-publisher")
        logging_program = api.upload(LOGGING, "restart-logging")
        sleeper = api.upload(SLEEPER, "restart-sleeper")
        done = api.run(publisher, {"iterations": 2})
        logged = api.run(logging_program, log_level="INFO")
        assert api.wait(done)["status"] == "COMPLETED"
        assert api.wait(logged)["status"] == "COMPLETED"
        running = api.run(sleeper)
        api.wait_running(running)
        queued = [api.run(publisher, {"iterations": 3}) for _ in range(2)]
        assert {api.job(j)["status"] for j in queued} == {"QUEUED"}
        before = {
            "programs": api.get("/programs", params={"limit": 100}).json(),
            "done": api.job(done),
            "done_messages": api.get(f"/jobs/{done}/interim_results").json(),
            "logs": api.get(f"/jobs/{logged}/logs").text,
        }
        children = _descendants(first.process.pid)
    finally:
        stop_service(first, signal.SIGKILL)
    # The warm parent and the job it ran notice that the service is gone.
    _gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, f"processes of the killed service are still running: {alive}"

    second = start_service(home, "--workers", "1")
    try:
        api = Api(second.url, api.token)
        assert api.get("/programs", params={"limit": 100}).json() == before["programs"]
        assert api.get(f"/programs/{sleeper}").json()["data"] == SLEEPER
        assert api.job(done) == before["done"]
        assert api.get(f"/jobs/{done}/results").text == '"foo"'
        assert api.get(f"/jobs/{done}/interim_results").json() == before["done_messages"]
        assert api.get(f"/jobs/{logged}/logs").text == before["logs"]
        assert "printed line" in before["logs"]

        lost = api.job(running)
        assert lost["status"] == "FAILED"
        assert lost["reason_code"] == "SERVICE_RESTARTED"
        assert lost["retryable"] is True
        assert "SERVICE_RESTARTED" in api.get(f"/jobs/{running}/results").text

        for job_id in queued:
            job = api.wait(job_id)
            assert job["status"] == "COMPLETED"
            assert job["message_count"] == 3
            assert api.get(f"/jobs/{job_id}/results").text == '"foo"'
        # The next job gets a fresh working directory, and finished jobs leave none behind.
        again = api.run(publisher, {"iterations": 0})
        assert api.wait(again)["status"] == "COMPLETED"
        assert not any((home / "jobs").iterdir())
    finally:
        assert stop_service(second) == 0


def test_sigterm_fails_running_jobs_at_once(tmp_path: Path) -> None:
    """A clean stop also ends running jobs as SERVICE_RESTARTED (no wait for the next start)."""
    home = tmp_path / "home"
    svc = start_service(home, "--workers", "1")
    api = make_api(svc, "term-user")
    job_id = api.run(api.upload(SLEEPER))
    api.wait_running(job_id)
    assert stop_service(svc) == 0
    assert not (home / "ready.json").exists()
    svc = start_service(home, "--workers", "1")
    try:
        job = Api(svc.url, api.token).job(job_id)
        assert job["status"] == "FAILED" and job["reason_code"] == "SERVICE_RESTARTED"
    finally:
        stop_service(svc)
