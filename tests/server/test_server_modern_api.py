"""The modern API over raw HTTP: the token endpoint, instance lookups, the credentials every
route wants, backends, primitive jobs and their states, tags, error bodies, and one user's jobs
invisible to another. The real client drives the same routes in ``tests/compat_modern``."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
import requests
from modern_helpers import ModernApi, bell_params, error_of, token_for
from server_helpers import unique
from service_helpers import RunningService

from prefect_qiskit_runtime.core.codec import RuntimeDecoder
from prefect_qiskit_runtime.server.store import hash_token


@pytest.fixture(scope="module")
def carol(service: RunningService) -> ModernApi:
    return ModernApi(service, service.add_user(unique("carol")))


@pytest.fixture(scope="module")
def dave(service: RunningService) -> ModernApi:
    return ModernApi(service, service.add_user(unique("dave")))


def _claims(token: str) -> dict[str, object]:
    middle = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(middle + "=" * 4))
    return claims


def test_token_endpoint_issues_a_bearer_token(service: RunningService) -> None:
    answer = token_for(service, service.add_user("alice"))
    assert answer.status_code == 200
    body = answer.json()
    assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    claims = _claims(body["access_token"])
    assert claims["exp"] == body["expiration"] == int(str(claims["iat"])) + 3600


def test_token_endpoint_refusals(service: RunningService) -> None:
    assert error_of(token_for(service, "pqr_unknown"))["code"] == "UNAUTHORIZED"
    assert token_for(service, "pqr_unknown").status_code == 401
    bad_grant = requests.post(
        service.url + "/iam/identity/token",
        data={"grant_type": "password", "apikey": service.add_user("alice")},
        timeout=30,
    )
    assert bad_grant.status_code == 400 and error_of(bad_grant)["code"] == "INVALID_REQUEST"
    garbage = requests.post(service.url + "/iam/identity/token", data=b"\xff\xfe", timeout=30)
    assert garbage.status_code == 400


def test_access_tokens_are_stored_hashed_and_expire(
    service: RunningService, carol: ModernApi
) -> None:
    digest = hash_token(carol.access_token)
    with sqlite3.connect(service.home / "runtime.db", timeout=30) as conn:
        rows = conn.execute("SELECT token_hash FROM access_tokens").fetchall()
    assert (digest,) in rows and all(carol.access_token not in r[0] for r in rows)
    # A token never used yet (so not in the service's 30-second cache of checked tokens).
    fresh = token_for(service, service.add_user(unique("expiring"))).json()["access_token"]
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(tzinfo=None)
    with sqlite3.connect(service.home / "runtime.db", timeout=30) as conn:
        conn.execute(
            "UPDATE access_tokens SET expires = ? WHERE token_hash = ?",
            (past.isoformat(sep=" "), hash_token(fresh)),
        )
    answer = requests.get(
        service.url + "/api/v1/backends", headers={"Authorization": f"Bearer {fresh}"}, timeout=30
    )
    assert answer.status_code == 401, answer.text


def test_access_tokens_die_with_their_api_token(service: RunningService) -> None:
    api_token = service.add_user(unique("revoked"))
    access = token_for(service, api_token).json()["access_token"]
    with sqlite3.connect(service.home / "runtime.db", timeout=30) as conn:
        conn.execute("DELETE FROM tokens WHERE token_hash = ?", (hash_token(api_token),))
    answer = requests.get(
        service.url + "/api/v1/backends", headers={"Authorization": f"Bearer {access}"}, timeout=30
    )
    assert answer.status_code == 401, answer.text


def test_instance_search_and_catalog(carol: ModernApi, dave: ModernApi) -> None:
    assert carol.crn.startswith("crn:v1:local:public:quantum-computing:local:a/")
    assert carol.crn != dave.crn
    catalog = requests.get(
        carol.service.url + "/global-catalog/prefect-qiskit-runtime-local",
        headers={"Authorization": f"Bearer {carol.access_token}"},
        timeout=30,
    ).json()
    assert catalog["metadata"]["pricing"]["type"] == "free"
    missing = requests.get(
        carol.service.url + "/global-catalog/other",
        headers={"Authorization": f"Bearer {carol.access_token}"},
        timeout=30,
    )
    assert missing.status_code == 404


def test_every_route_wants_credentials_and_the_own_instance(
    carol: ModernApi, dave: ModernApi
) -> None:
    url = carol.service.url + "/api/v1/backends"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        answer = requests.get(url, headers=headers, timeout=30)
        assert answer.status_code == 401 and error_of(answer)["code"] == "UNAUTHORIZED"
    apikey = requests.get(url, headers={"Authorization": f"apikey {carol.api_token}"}, timeout=30)
    assert apikey.status_code == 200
    foreign = carol.call("GET", "/backends", headers={"Service-CRN": dave.crn})
    assert foreign.status_code == 403 and error_of(foreign)["code"] == "FORBIDDEN"


def test_backends(carol: ModernApi) -> None:
    devices = carol.call("GET", "/backends").json()["devices"]
    names = [d["name"] for d in devices]
    assert "aer_simulator" in names and "fake_5q_device" in names
    assert all(d["status"]["name"] == "online" for d in devices)
    config = carol.call("GET", "/backends/fake_5q_device/configuration").json()
    assert (config["n_qubits"], config["simulator"]) == (5, False)
    assert {"measure", "reset", "delay"} <= set(config["supported_instructions"])
    aer = carol.call("GET", "/backends/aer_simulator/configuration").json()
    assert aer["simulator"] is True and "unitary" not in aer["basis_gates"]
    status = carol.call("GET", "/backends/aer_simulator/status").json()
    assert status["state"] is True and status["length_queue"] >= 0
    assert carol.call("GET", "/backends/aer_simulator/properties").json() == {}
    missing = carol.call("GET", "/backends/nope/status")
    assert missing.status_code == 404 and error_of(missing)["code"] == "BACKEND_NOT_FOUND"


def test_sampler_job_end_to_end(carol: ModernApi) -> None:
    created = carol.run(params=bell_params(shots=300, simulator={"seed_simulator": 3}))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["backend"] == "aer_simulator"
    job = carol.wait(job_id)
    assert (job["status"], job["state"]["status"], job["program"]["id"]) == (
        "Completed",
        "Completed",
        "sampler",
    )
    assert job["params"]["options"] == {"shots": 4096, "seed": 3}
    assert "params" not in carol.call("GET", f"/jobs/{job_id}?exclude_params=true").json()
    result = json.loads(carol.call("GET", f"/jobs/{job_id}/results").text, cls=RuntimeDecoder)
    counts = result[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 300
    metrics = carol.call("GET", f"/jobs/{job_id}/metrics").json()
    assert metrics["usage"]["status"] == "completed"
    assert carol.call("GET", f"/jobs/{job_id}/logs").status_code == 200


def test_submission_refusals(carol: ModernApi) -> None:
    cases = [
        ({"program": "hello-world"}, 404, "PROGRAM_NOT_FOUND"),
        ({"params": {"pubs": [], "version": 2}}, 400, "INVALID_INPUT"),
        ({"params": {**bell_params(), "version": 1}}, 400, "INVALID_INPUT"),
        ({"params": {**bell_params(), "options": {"default_shots": "many"}}}, 400, "INVALID_INPUT"),
        ({"params": {**bell_params(), "options": []}}, 400, "INVALID_INPUT"),
        ({"backend": "nope"}, 400, "INVALID_BACKEND"),
        ({"backend": None}, 400, "INVALID_BACKEND"),
        ({"session_id": "0" * 20}, 404, "SESSION_NOT_FOUND"),
        ({"tags": [""]}, 400, "INVALID_REQUEST"),
        ({"calibration_id": "c1"}, 400, "INVALID_REQUEST"),
        ({"log_level": "LOUD"}, 400, "INVALID_REQUEST"),
        ({"cost": 0}, 400, "INVALID_REQUEST"),
    ]
    for body, status, code in cases:
        program = body.pop("program", "sampler")
        answer = carol.run(program, **body)
        assert answer.status_code == status, (body, answer.text)
        assert error_of(answer)["code"] == code, body
    for raw in (b"not json", b"[]", b'{"program_id": 5}'):
        answer = carol.call("POST", "/jobs", data=raw)
        assert answer.status_code == 400 and error_of(answer)["code"] == "INVALID_REQUEST"


def test_failed_job_state_names_the_error(carol: ModernApi) -> None:
    from qiskit import QuantumCircuit

    from prefect_qiskit_runtime.core.codec import RuntimeEncoder

    wide = QuantumCircuit(26)
    wide.h(range(26))
    wide.measure_all()
    params = json.loads(json.dumps({"pubs": [(wide,)], "version": 2}, cls=RuntimeEncoder))
    job_id = carol.run(backend="basic_simulator", params=params).json()["id"]
    job = carol.wait(job_id)
    assert job["state"]["status"] == "Failed"
    assert "greater than maximum (24)" in job["state"]["reason"]
    assert job["reason_code_name"] == "PROGRAM_ERROR" and job["retryable"] is False
    assert "Traceback" in carol.call("GET", f"/jobs/{job_id}/results").text


def test_tags_and_listing(carol: ModernApi) -> None:
    tag = unique("tag")
    first = carol.run(tags=[tag, "a"]).json()["id"]
    second = carol.run("estimator", params=_zz_params(), tags=[tag]).json()["id"]
    for job_id in (first, second):
        carol.wait(job_id)

    def listed(**params: object) -> list[str]:
        body = carol.call("GET", "/jobs", params={"tags": [tag], **params}).json()
        return [job["id"] for job in body["jobs"]]

    assert listed() == [second, first]
    assert listed(sort="ASC") == [first, second]
    assert listed(program="estimator") == [second]
    assert listed(tags=[tag, "a"]) == [first]
    assert listed(pending="true") == []
    assert listed(limit=1) == [second]
    page = carol.call("GET", "/jobs", params={"tags": [tag], "offset": 50}).json()
    assert page == {"jobs": [], "count": 50}
    assert carol.call("PUT", f"/jobs/{first}/tags", json={"tags": ["b"]}).status_code == 204
    assert carol.call("GET", f"/jobs/{first}").json()["tags"] == ["b"]
    assert carol.call("PUT", f"/jobs/{first}/tags", json={"tags": [" "]}).status_code == 400


def _zz_params() -> dict[str, object]:
    from qiskit import QuantumCircuit

    from prefect_qiskit_runtime.core.codec import RuntimeEncoder

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    pub = (circuit, [{"ZZ": 1.0}], None, None)
    decoded: dict[str, object] = json.loads(
        json.dumps({"pubs": [pub], "version": 2}, cls=RuntimeEncoder)
    )
    return decoded


def test_estimator_job(carol: ModernApi) -> None:
    job_id = carol.run("estimator", params=_zz_params()).json()["id"]
    assert carol.wait(job_id)["status"] == "Completed"
    result = json.loads(carol.call("GET", f"/jobs/{job_id}/results").text, cls=RuntimeDecoder)
    assert float(result[0].data.evs[0]) == pytest.approx(1.0)


def test_another_users_jobs_are_not_found(carol: ModernApi, dave: ModernApi) -> None:
    job_id = carol.run().json()["id"]
    for method, path in [
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/results"),
        ("GET", f"/jobs/{job_id}/logs"),
        ("GET", f"/jobs/{job_id}/metrics"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("DELETE", f"/jobs/{job_id}"),
    ]:
        answer = dave.call(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert error_of(answer)["code"] == "JOB_NOT_FOUND"
    answer = dave.call("PUT", f"/jobs/{job_id}/tags", json={"tags": ["x"]})
    assert answer.status_code == 404
    assert job_id not in [j["id"] for j in dave.call("GET", "/jobs").json()["jobs"]]
    carol.wait(job_id)
    assert carol.call("DELETE", f"/jobs/{job_id}").status_code == 204
    assert carol.call("GET", f"/jobs/{job_id}").status_code == 404


def test_usage(carol: ModernApi) -> None:
    usage = carol.call("GET", "/instances/usage").json()
    assert usage["instance_id"] == carol.crn and usage["usage_limit_reached"] is False
    assert usage["usage_consumed_seconds"] >= 0
