"""SamplerV2 and EstimatorV2 of the real qiskit-ibm-runtime 0.51 in job mode: the account, the
backends, results decoded by the client, options, failures and the time limit."""

from __future__ import annotations

from typing import Any

import pytest
from modernclient import ScriptRunner, script_check

pytestmark = [pytest.mark.compat, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def results(run_modern: ScriptRunner) -> dict[str, Any]:
    return run_modern("mc_primitives")


def test_script_completed(results: dict[str, Any]) -> None:
    assert results.get("_done") is True, results.get("_stderr", "")[-6000:]


def test_account_and_backends(results: dict[str, Any]) -> None:
    r = script_check(results, "account")
    [instance] = r["instances"]
    assert instance["crn"].startswith("crn:v1:local:") and instance["crn"] == r["active"]
    assert r["by_name"] == r["by_crn"] == r["active"]
    assert (instance["name"], instance["pricing_type"]) == ("local", "free")
    assert r["backends"] == sorted(
        [
            "aer_simulator",
            "basic_simulator",
            "fake_27q_device",
            "fake_5q_device",
            "ibmq_qasm_simulator",
        ]
    )
    assert (r["n_qubits"], r["simulator"], r["coupling"]) == (27, False, 56)
    assert r["status"] == {"operational": True, "msg": "active"}
    assert r["least_busy"] in {"aer_simulator", "ibmq_qasm_simulator", "fake_27q_device"}


def test_sampler_bell_counts(results: dict[str, Any]) -> None:
    r = script_check(results, "sampler_bell")
    assert (r["result_type"], r["pub_type"]) == ("PrimitiveResult", "SamplerPubResult")
    assert r["status"] == "DONE" and r["num_shots"] == 4000
    counts = r["counts"]
    assert set(counts) == {"00", "11"}
    assert abs(counts["00"] / 4000 - 0.5) < 0.05
    assert r["same_seed_same_counts"] is True


def test_sampler_inputs_are_the_programs(results: dict[str, Any]) -> None:
    r = script_check(results, "sampler_bell")
    assert r["inputs_keys"] == ["options", "pubs"]
    assert r["inputs_options"] == {"shots": 4096, "seed": 1234}


def test_sampler_shots(results: dict[str, Any]) -> None:
    r = script_check(results, "sampler_default_shots")
    assert (r["num_shots"], r["option_shots"]) == (4096, 123)


def test_sampler_parameter_sweep(results: dict[str, Any]) -> None:
    r = script_check(results, "sampler_sweep")
    assert r["shape"] == [2]
    assert r["first"] == {"0": 200}
    assert r["second"] == {"1": 200}


def test_estimator_zz_of_bell_state(results: dict[str, Any]) -> None:
    r = script_check(results, "estimator_zz")
    assert r["result_type"] == "PrimitiveResult"
    assert r["evs"] == pytest.approx(1.0, abs=1e-9)
    assert r["stds"] == pytest.approx(0.0, abs=1e-9)
    assert r["several"] == pytest.approx([1.0, 1.0, 0.0], abs=1e-9)


def test_estimator_with_precision_samples(results: dict[str, Any]) -> None:
    r = script_check(results, "estimator_precision")
    assert r["evs"] == pytest.approx(1.0, abs=0.05)
    assert r["precision"] == pytest.approx(0.01)


def test_failed_job_raises_with_the_error(results: dict[str, Any]) -> None:
    r = script_check(results, "failure")
    assert r["result"]["type"] == "RuntimeJobFailureError"
    assert "greater than maximum (24)" in r["result"]["message"]
    assert r["status"] == "ERROR"
    assert "greater than maximum (24)" in r["error_message"]


def test_time_limit_raises_max_timeout(results: dict[str, Any]) -> None:
    r = script_check(results, "time_limit")
    assert r["result"]["type"] == "RuntimeJobMaxTimeoutError", r["result"]
    assert r["status"] == "ERROR"
    assert r["logs"] is None
