"""Jobs with the real qiskit-ibm-runtime 0.51: cancel, service.job(job_id), listing with filters
and tags, logs, metrics, usage, delete, and what a second user sees."""

from __future__ import annotations

from typing import Any

import pytest
from modernclient import ScriptRunner, script_check

pytestmark = [pytest.mark.compat, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def results(run_modern: ScriptRunner) -> dict[str, Any]:
    return run_modern("mc_jobs")


def test_script_completed(results: dict[str, Any]) -> None:
    assert results.get("_done") is True, results.get("_stderr", "")[-6000:]


def test_cancel_running_job(results: dict[str, Any]) -> None:
    r = script_check(results, "cancel")
    assert r["running"] == "RUNNING"
    assert r["status"] == r["server_status"] == "CANCELLED"
    assert r["result"]["type"] == "RuntimeInvalidStateError"
    assert r["cancel_again"]["type"] == "RuntimeInvalidStateError"


def test_lookup_by_id(results: dict[str, Any]) -> None:
    r = script_check(results, "lookup")
    assert r["same_id"] is True and r["primitive_id"] == "sampler"
    assert r["status"] == "DONE" and r["backend"] == "aer_simulator"
    assert r["tags"] == r["expected_tags"]
    assert r["same_counts"] is True and r["created"] is True


def test_listing_and_tags(results: dict[str, Any]) -> None:
    lookup = script_check(results, "lookup")
    r = script_check(results, "listing")
    assert r["tagged"] == r["expected"]
    assert r["both_tags"] == [lookup["job_id"]]
    assert r["estimators"] == [r["est_id"]]
    assert r["pending"] == []
    assert r["limit"] == 2
    assert r["past_the_end"] == 0
    assert r["oldest_first"] == [lookup["job_id"], r["est_id"]]
    assert "renamed" in r["renamed"]


def test_logs_metrics_usage(results: dict[str, Any]) -> None:
    r = script_check(results, "logs_metrics_usage")
    assert r["logs_type"] == "str"
    assert r["timestamps"] == ["created", "finished", "running"]
    assert r["usage"] >= 0
    assert r["consumed"] > 0 and r["limit_reached"] is False


def test_delete(results: dict[str, Any]) -> None:
    assert script_check(results, "delete")["lookup"] == "RuntimeJobNotFound"


def test_other_user_sees_nothing(results: dict[str, Any]) -> None:
    r = script_check(results, "other_user")
    assert r["lookup"] == "RuntimeJobNotFound"
    assert r["listed"] == []
    assert r["dave_crn_differs"] is True
    assert r["carol_instance"] == "IBMInputValueError"


def test_unknown_things(results: dict[str, Any]) -> None:
    r = script_check(results, "unknown")
    assert r["job"] == "RuntimeJobNotFound"
    assert r["backend"] == "QiskitBackendNotFoundError"
    assert r["bad_token"] is not None
