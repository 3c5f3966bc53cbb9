"""Programs with the real old client: upload, list, data, update, visibility, delete, logout, and a
user without upload rights (checklist items 7-20, 42)."""

from __future__ import annotations

from typing import Any

import pytest
from oldclient import ScriptRunner, script_check

# The first test of a module also runs its old-client script (and maybe builds the venv).
pytestmark = [pytest.mark.compat, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def results(run_script: ScriptRunner) -> dict[str, Any]:
    return run_script("oc_programs")


def test_script_completed(results: dict[str, Any]) -> None:
    assert results.get("_done") is True, results.get("_stderr", "")[-6000:]


def test_builtin_programs_listed(results: dict[str, Any]) -> None:
    names = script_check(results, "before")["names"]
    for name in ("hello-world", "circuit-runner", "sampler", "estimator", "vqe", "qaoa"):
        assert name in names


def test_upload_with_metadata_dict_spec_form(results: dict[str, Any]) -> None:
    r = script_check(results, "upload_dict")
    prog = r["program"]
    assert prog["id"] == r["id"]
    assert prog["name"].startswith("compat-dict-")
    assert prog["description"] == "Uploaded with a metadata dict."
    assert prog["max_execution_time"] == 300
    assert prog["is_public"] is False
    assert prog["creation_date"] and prog["update_date"]
    spec = r["spec_sent"]
    assert prog["backend_requirements"] == spec["backend_requirements"]
    assert prog["parameters"] == spec["parameters"]
    assert prog["return_values"] == spec["return_values"]
    assert prog["interim_results"] == spec["interim_results"]
    assert r["id"] in r["str"] and "iterations" in r["str"]


def test_parameter_namespace_validates_required(results: dict[str, Any]) -> None:
    r = script_check(results, "upload_dict")
    assert r["namespace_attrs"] == ["interval", "iterations"]
    assert r["namespace_validate_missing"]["type"] == "IBMQInputValueError"
    assert "iterations" in r["namespace_validate_missing"]["message"]
    assert r["namespace_validate_ok"]["type"] is None


def test_upload_with_metadata_file_and_source_file(results: dict[str, Any]) -> None:
    prog = script_check(results, "upload_file")["program"]
    assert prog["name"].startswith("compat-file-")
    assert prog["max_execution_time"] == 3000
    assert prog["is_public"] is True
    assert prog["parameters"] == {"type": "object", "properties": {}}


def test_data_returned_to_author(results: dict[str, Any]) -> None:
    r = script_check(results, "data_author")
    assert r["equal"] is True
    assert r["file_equal"] is True


def test_duplicate_name_and_missing_metadata(results: dict[str, Any]) -> None:
    assert script_check(results, "duplicate")["raised"]["type"] == "RuntimeDuplicateProgramError"
    assert script_check(results, "missing_metadata")["raised"]["type"] == "IBMQInputValueError"


def test_unknown_program_not_found(results: dict[str, Any]) -> None:
    assert script_check(results, "unknown_program")["raised"]["type"] == "RuntimeProgramNotFound"


def test_pagination_over_more_than_one_page(results: dict[str, Any]) -> None:
    r = script_check(results, "many")
    assert r["expected"] > 20
    assert r["count"] == r["distinct"] == r["expected"]
    assert r["limit_none_length"] == r["expected"]
    assert r["all_created_listed"] is True
    assert r["is_runtime_program"] is True
    assert r["default_limit"] == 20
    # Oldest first and stable: the last three uploads are the last three listed, in order.
    assert r["positions_of_last_three"] == [r["count"] - 3, r["count"] - 2, r["count"] - 1]
    assert r["skip_window"] == r["last_two"]


def test_pprint_programs(results: dict[str, Any]) -> None:
    r = script_check(results, "many")
    assert r["pprint_has_all"] is True
    assert r["pprint_has_builtins"] == ["hello-world", "circuit-runner"]
    assert r["pprint_default_lines"] == 20
    assert "Name: " in r["pprint_head"] and "Description: " in r["pprint_head"]


def test_update_program_data(results: dict[str, Any]) -> None:
    r = script_check(results, "update_data")
    assert r["data_updated"] is True
    assert r["new_update_date"]
    assert r["new_update_date"] >= r["old_update_date"]


def test_update_program_metadata(results: dict[str, Any]) -> None:
    r = script_check(results, "update_metadata")
    prog = r["program"]
    assert prog["name"].startswith("compat-renamed-")
    assert prog["description"] == "A new description."
    assert prog["max_execution_time"] == 600
    assert prog["parameters"] == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert r["data_kept"] is True
    assert r["unknown"]["type"] == "RuntimeProgramNotFound"


def test_set_program_visibility(results: dict[str, Any]) -> None:
    r = script_check(results, "visibility")
    assert r["after_public"] is True
    assert r["after_private"] is False
    assert r["unknown"]["type"] == "RuntimeJobNotFound"  # sic: the old client's mapping of 404


def test_user_without_upload_right(results: dict[str, Any]) -> None:
    r = script_check(results, "dave")
    assert r["upload"]["type"] == "IBMQNotAuthorizedError", r["upload"]
    assert r["sees_builtin"] is True
    assert r["sees_public_file_program"] is True
    assert r["sees_private_dict_program"] is False
    assert r["private_get"]["type"] == "RuntimeProgramNotFound"
    # Program data goes to the author only.
    assert r["public_data"]["type"] == "IBMQNotAuthorizedError"
    assert r["builtin_data"]["type"] == "IBMQNotAuthorizedError"


def test_other_user_cannot_change_a_public_program(results: dict[str, Any]) -> None:
    r = script_check(results, "dave")
    for key in ("delete_other", "update_other", "visibility_other"):
        err = r[key]
        assert "QiskitRuntimeError" in err["mro"], (key, err)
        # Refused as not found (404) or forbidden (403), never a server error.
        assert err["type"] in ("RuntimeProgramNotFound", "RuntimeJobNotFound") or (
            "403" in err["message"]
        ), (key, err)
    after = script_check(results, "after_dave")
    assert after["still_public"] is True
    assert after["description"] == "Uploaded with a metadata file."


def test_logout_then_still_working(results: dict[str, Any]) -> None:
    r = script_check(results, "logout")
    assert r["uploaded"] is True
    assert r["get_after"].startswith("compat-after-logout-")


def test_delete_program(results: dict[str, Any]) -> None:
    r = script_check(results, "delete")
    assert r["get_deleted"]["type"] == "RuntimeProgramNotFound"
    assert r["delete_again"]["type"] == "RuntimeProgramNotFound"
    assert r["count_after_cleanup"] == r["count_before"]


def test_the_original_program_template_runs_unchanged(results: dict[str, Any]) -> None:
    """``program_template.py`` of qiskit-ibmq-provider 0.20.2, uploaded by that client as a file,
    imports ``qiskit.providers.ibmq.runtime`` and runs: its interim result and its final result."""
    r = script_check(results, "legacy_style")
    assert r["source_is_the_template"] is True
    assert r["results"]["template"] == "final result"
    assert r["interim"]["template"] == ["This is an interim result."]
    assert r["stream_errors"] == [None, None]


def test_a_program_importing_qiskit_ibm_runtime_program_runs(results: dict[str, Any]) -> None:
    r = script_check(results, "legacy_style")
    assert r["interim"]["modern"] == [{"backend": "aer_simulator"}]
    assert r["results"]["modern"]["messenger"] == "UserMessenger"
    assert r["results"]["modern"]["qubits"] >= 2
