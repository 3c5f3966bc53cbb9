"""Account discovery (spec/runtime-api.md §2), authentication (item 44), ownership (alice vs bob),
error bodies, and the service endpoints /health and /metrics."""

from __future__ import annotations

import sqlite3

import requests
from server_helpers import PUBLISHER, Api, make_api, unique
from service_helpers import RunningService

from prefect_qiskit_runtime.server.store import hash_token

RUNTIME_CALLS = [
    ("GET", "/programs"),
    ("POST", "/programs"),
    ("GET", "/programs/hello-world"),
    ("DELETE", "/programs/hello-world"),
    ("PUT", "/programs/hello-world/data"),
    ("PATCH", "/programs/hello-world"),
    ("PUT", "/programs/hello-world/public"),
    ("PUT", "/programs/hello-world/private"),
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/x"),
    ("DELETE", "/jobs/x"),
    ("GET", "/jobs/x/results"),
    ("GET", "/jobs/x/logs"),
    ("GET", "/jobs/x/interim_results"),
    ("POST", "/jobs/x/cancel"),
    ("POST", "/logout"),
    ("GET", "/backends"),
]


def test_version_needs_no_token(service: RunningService) -> None:
    """Discovery step 1: the key ``api-auth`` is present."""
    body = requests.get(service.url + "/api/version", timeout=30).json()
    assert "api-auth" in body


def test_login_with_token(service: RunningService, alice: Api) -> None:
    """Discovery step 2: the access token is the API token; a bad one is 401."""
    url = service.url + "/api/users/loginWithToken"
    good = requests.post(url, json={"apiToken": alice.token}, timeout=30)
    assert good.status_code == 200 and good.json()["id"] == alice.token
    for body in ({"apiToken": "wrong"}, {}, None):
        bad = requests.post(url, json=body, timeout=30)
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "UNAUTHORIZED"
    for raw in (b"{nope", b"[" * 100_000 + b"]" * 100_000):
        assert requests.post(url, data=raw, timeout=30).status_code == 400


def test_users_me_advertises_this_service(service: RunningService, alice: Api) -> None:
    """Discovery step 3: URLs from the request's own base URL."""
    me = requests.get(service.url + "/api/users/me", headers=_h(alice), timeout=30).json()
    assert me["urls"]["http"] == service.url + "/api"
    assert me["urls"]["ws"] == "ws" + service.url[4:] + "/ws"
    assert me["urls"]["services"]["runtime"] == service.url + "/runtime"
    assert requests.get(service.url + "/api/users/me", timeout=30).status_code == 401


def test_network_and_devices(service: RunningService, alice: Api) -> None:
    """Discovery steps 4-5: one default hub/group/project, and its backend configurations."""
    network = requests.get(service.url + "/api/Network", headers=_h(alice), timeout=30).json()
    assert len(network) == 1
    hub = network[0]
    group = hub["groups"]["default"]
    assert hub["name"] == "local" and group["projects"]["main"]["isDefault"] is True
    devices_url = service.url + "/api/Network/local/Groups/default/Projects/main/devices/v/1"
    devices = requests.get(devices_url, headers=_h(alice), timeout=30).json()
    names = {d["backend_name"] for d in devices}
    assert {"aer_simulator", "basic_simulator", "ibmq_qasm_simulator"} <= names
    required = {"backend_version", "n_qubits", "max_shots", "basis_gates", "gates", "online_date"}
    assert all(required <= set(d) for d in devices)
    other = devices_url.replace("/local/", "/ibm-q/")
    assert requests.get(other, headers=_h(alice), timeout=30).status_code == 404
    backends = alice.get("/backends").json()["backends"]
    assert {b["backend_name"] for b in backends} == names


def test_every_runtime_call_needs_a_token(service: RunningService) -> None:
    """Item 44: missing or unknown X-Access-Token → 401 with the error body."""
    for token in (None, "unknown-token"):
        headers = {"X-Access-Token": token} if token else {}
        for method, path in RUNTIME_CALLS:
            response = requests.request(
                method, service.runtime + path, headers=headers, data=b"{}", timeout=30
            )
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_other_users_jobs_are_invisible(alice: Api, bob: Api) -> None:
    """A job of alice is a 404 for bob everywhere, and absent from his listings."""
    pid = alice.upload(PUBLISHER, is_public=True)
    job_id = alice.run(pid, {"iterations": 1})
    alice.wait(job_id)
    for method, path in [
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}/results"),
        ("GET", f"/jobs/{job_id}/logs"),
        ("GET", f"/jobs/{job_id}/interim_results"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("DELETE", f"/jobs/{job_id}"),
    ]:
        response = bob.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "JOB_NOT_FOUND"
    listed = bob.get("/jobs", params={"limit": 1000}).json()["jobs"]
    assert job_id not in {j["id"] for j in listed}
    assert bob.get("/jobs", params={"program": pid}).json()["count"] == 0
    # bob may run alice's public program; his job is his own.
    bobs = bob.run(pid, {"iterations": 0})
    assert bob.wait(bobs)["status"] == "COMPLETED"
    assert alice.get(f"/jobs/{bobs}").status_code == 404
    assert alice.get(f"/jobs/{job_id}").status_code == 200
    private = alice.upload(PUBLISHER)
    assert (
        bob.post_json("/jobs", {"program_id": private, "backend": "aer_simulator"}).status_code
        == 404
    )


def test_error_bodies_and_no_redirects(alice: Api) -> None:
    """Unknown routes, wrong methods and trailing slashes answer JSON errors, never redirects."""
    for method, path, status in [
        ("GET", "/no-such-route", 404),
        ("GET", "/programs/", 404),
        ("PATCH", "/jobs", 405),
    ]:
        response = alice.request(method, path, allow_redirects=False)
        assert response.status_code == status, (method, path)
        body = response.json()
        assert body["error"]["code"] and body["error"]["message"]


def test_health_and_metrics(service: RunningService, alice: Api) -> None:
    """/health needs no token and shows that neither Prefect nor Qiskit is in the service."""
    health = requests.get(service.url + "/health", timeout=30).json()
    assert health["status"] == "ok"
    assert health["prefect_imported"] is False
    assert health["qiskit_imported"] is False
    assert health["capacity"] == 2
    alice.get("/programs", params={"limit": 1})
    metrics = requests.get(service.url + "/metrics", timeout=30)
    assert metrics.status_code == 200
    assert 'pqr_http_requests_total{method="GET",route="/runtime/programs",status="200"}' in (
        metrics.text
    )
    assert 'pqr_jobs{status="COMPLETED"}' in metrics.text


def _h(api: Api) -> dict[str, str]:
    return {"X-Access-Token": api.token}


def test_logout_clears_the_authorisation_cache(service: RunningService) -> None:
    """A checked token is remembered for a while (so its removal from the database goes unseen);
    ``POST /runtime/logout`` forgets it, and the next call is checked against the database."""
    api = make_api(service, unique("cached"))
    assert api.get("/programs", params={"limit": 1}).status_code == 200
    with sqlite3.connect(service.home / "runtime.db", timeout=30) as conn:
        removed = conn.execute(
            "DELETE FROM tokens WHERE token_hash = ?", (hash_token(api.token),)
        ).rowcount
    assert removed == 1
    assert api.get("/programs", params={"limit": 1}).status_code == 200  # from the cache
    assert api.request("POST", "/logout").status_code == 204
    gone = api.get("/programs", params={"limit": 1})
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "UNAUTHORIZED"
