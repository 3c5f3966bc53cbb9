"""Session and Batch of the real qiskit-ibm-runtime 0.51 on the noisy 5-qubit device: the jobs
carry the session id, results are right within the device's noise, close and cancel work."""

from __future__ import annotations

from typing import Any

import pytest
from modernclient import ScriptRunner, script_check

pytestmark = [pytest.mark.compat, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def results(run_modern: ScriptRunner) -> dict[str, Any]:
    return run_modern("mc_sessions")


def test_script_completed(results: dict[str, Any]) -> None:
    assert results.get("_done") is True, results.get("_stderr", "")[-6000:]


def test_device_refuses_non_isa_circuits(results: dict[str, Any]) -> None:
    r = script_check(results, "not_isa")
    assert r["run"]["type"] == "IBMInputValueError"


def test_session_jobs(results: dict[str, Any]) -> None:
    r = script_check(results, "session")
    assert r["session_id"]
    assert r["job_session"] == r["est_session"] == r["looked_up_session"] == r["session_id"]
    counts = r["counts"]
    assert abs(counts.get("00", 0) / 4000 - 0.5) < 0.07
    assert abs(counts.get("11", 0) / 4000 - 0.5) < 0.07
    assert (counts.get("01", 0) + counts.get("10", 0)) / 4000 < 0.08  # the device's noise
    assert 0.85 < r["zz"] <= 1.0
    assert r["listed"] == r["expected"]


def test_session_lifecycle(results: dict[str, Any]) -> None:
    r = script_check(results, "session")
    assert r["status_before"] == "Pending"
    assert r["status_during"] == "Pending"  # inactive: its jobs ended, it accepts more
    assert r["details"] == {
        "mode": "dedicated",
        "state": "inactive",
        "accepting_jobs": True,
        "max_time": 600,
    }
    assert r["usage"] > 0
    assert r["status_after"] == "Closed"
    assert r["closed_run"]["type"] == "IBMRuntimeError"


def test_session_from_id(results: dict[str, Any]) -> None:
    r = script_check(results, "from_id")
    assert r["backend"] == "fake_5q_device" and r["session_id"] is True
    assert r["as_batch"]["type"] == "IBMInputValueError"


def test_batch(results: dict[str, Any]) -> None:
    r = script_check(results, "batch")
    assert r["shots"] == [100, 200, 300]
    assert r["sessions"] == [r["batch_id"]]
    assert r["mode"] == "batch"
    assert r["status_after"] == "Closed"
    assert r["listed"] == 3


def test_session_cancel_cancels_its_running_job(results: dict[str, Any]) -> None:
    r = script_check(results, "session_cancel")
    assert r["running"] == "RUNNING"
    assert r["status_running"] == "In progress, accepting new jobs"
    assert r["job_status"] == "CANCELLED"
    assert r["session_status"] == "Closed" and r["details_state"] == "closed"
