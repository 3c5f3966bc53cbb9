"""circuit-runner with the real old client: ``run_circuits`` decoded by ``RunnerResult``,
measurement error mitigation, and the seed documentation's sample workflow (checklist item 43,
spec §8)."""

from __future__ import annotations

from typing import Any

import pytest
from oldclient import ScriptRunner, script_check

# The first test of a module also runs its old-client script (and maybe builds the venv).
pytestmark = [pytest.mark.compat, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def results(run_script: ScriptRunner) -> dict[str, Any]:
    return run_script("oc_circuits")


def test_script_completed(results: dict[str, Any]) -> None:
    assert results.get("_done") is True, results.get("_stderr", "")[-6000:]


def test_run_circuits_bell_counts_sum_to_shots(results: dict[str, Any]) -> None:
    r = script_check(results, "bell")
    assert r["type"] == "RunnerResult"
    assert r["success"] is True
    assert r["program_id"] == "circuit-runner"
    assert r["total"] == 100
    assert set(r["counts"]) <= {"00", "11"}  # noiseless simulator, Bell state
    assert {"circuits", "shots", "measurement_error_mitigation"} <= set(r["inputs_keys"])


def test_run_circuits_with_measurement_error_mitigation(results: dict[str, Any]) -> None:
    r = script_check(results, "mitigation")
    assert r["type"] == "RunnerResult"
    assert r["total"] == 100
    assert r["quasi_type"] == "QuasiDistribution"
    assert r["quasi_sum"] == pytest.approx(1.0, abs=1e-6)
    assert r["quasi"] and all(len(key) == 2 for key in r["quasi"])
    assert r["quasi_shots"] == 100


def test_run_circuits_with_a_list(results: dict[str, Any]) -> None:
    r = script_check(results, "two_circuits")
    assert r["n"] == 2
    assert r["totals"] == [50, 50]


def test_seed_documentation_workflow(results: dict[str, Any]) -> None:
    r = script_check(results, "seed_workflow")
    assert "circuit-runner" in r["listing"]
    assert r["backend"] == "ibmq_qasm_simulator"
    assert r["type"] == "RunnerResult"
    assert r["success"] is True
    assert r["total"] > 0
    assert r["quasi_sum"] == pytest.approx(1.0, abs=1e-6)
    assert r["quasi_keys"]
