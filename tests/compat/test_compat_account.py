"""Account discovery with the real old client (spec §2; checklist items 1-5, 44)."""

from __future__ import annotations

from typing import Any

import pytest
from oldclient import ScriptRunner, script_check
from service_helpers import RunningService

# The first test of a module also runs its old-client script (and maybe builds the venv).
pytestmark = [pytest.mark.compat, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def results(run_script: ScriptRunner) -> dict[str, Any]:
    return run_script("oc_account")


def test_script_completed(results: dict[str, Any]) -> None:
    assert results.get("_done") is True, results.get("_stderr", "")[-6000:]


def test_version_advertises_api_auth(results: dict[str, Any]) -> None:
    r = script_check(results, "version")
    assert r["status"] == 200
    assert "api-auth" in r["body"]


def test_runtime_call_without_or_with_wrong_token_is_401(results: dict[str, Any]) -> None:
    r = script_check(results, "raw_no_token")
    assert r["status"] == 401
    assert r["wrong_status"] == 401
    for body in (r["body"], r["wrong_body"]):
        assert body["error"]["message"]
        assert "code" in body["error"]


def test_enable_account_returns_default_provider(
    results: dict[str, Any], tls_service: RunningService
) -> None:
    r = script_check(results, "enable_account")
    assert r["provider_type"] == "AccountProvider"
    assert (r["hub"], r["group"], r["project"]) == ("local", "default", "main")
    assert r["providers"] == [["local", "default", "main"]]
    assert r["access_token_set"] is True
    assert r["active_url"] == tls_service.url + "/api"
    # /users/me: runtime URL and websocket URL of this same service.
    assert r["runtime_url"] == tls_service.url + "/runtime"
    assert r["websockets_url"] == tls_service.url.replace("https://", "wss://") + "/ws"
    assert r["has_runtime"] is True
    assert r["runtime_type"] == "IBMRuntimeService"


def test_devices_list_backends(results: dict[str, Any]) -> None:
    r = script_check(results, "devices")
    for name in ("aer_simulator", "basic_simulator", "ibmq_qasm_simulator"):
        assert name in r["names"]
    assert r["aer_n_qubits"] >= 2
    assert r["aer_simulator_flag"] is True
    assert r["aer_basis_gates"]
    assert r["alias_name"] == "ibmq_qasm_simulator"
    assert r["unknown"]["type"] == "QiskitBackendNotFoundError"


def test_bad_token_raises_401(results: dict[str, Any]) -> None:
    r = script_check(results, "bad_token")
    assert r["raised"]["type"] == "RequestsApiError", r["raised"]
    assert r["raised"]["status_code"] == 401
    assert r["active_after"] is None


def test_second_user_and_switching_back(results: dict[str, Any]) -> None:
    dave = script_check(results, "second_user")
    carol = script_check(results, "reenable")
    assert dave["provider_type"] == "AccountProvider"
    assert dave["program_count"] >= 6  # the built-in public programs
    assert carol["program_count"] >= dave["program_count"]
