"""Sessions and batches of the modern API over raw HTTP: jobs join them, closing and cancelling,
the states they report, and their refusals (a closed session takes no job, another user's session
is not found)."""

from __future__ import annotations

import pytest
from modern_helpers import ModernApi, error_of
from server_helpers import unique
from service_helpers import RunningService


@pytest.fixture(scope="module")
def erin(service: RunningService) -> ModernApi:
    return ModernApi(service, service.add_user(unique("erin")))


def _open(api: ModernApi, mode: str = "dedicated", **body: object) -> dict[str, object]:
    answer = api.call("POST", "/sessions", json={"mode": mode, "backend": "aer_simulator", **body})
    assert answer.status_code == 201, answer.text
    details: dict[str, object] = answer.json()
    return details


def test_session_life(erin: ModernApi) -> None:
    session = _open(erin, max_ttl=600)
    sid = session["id"]
    assert (session["state"], session["accepting_jobs"], session["max_ttl"]) == ("open", True, 600)
    job = erin.run(session_id=sid)
    assert job.status_code == 201 and job.json()["session_id"] == sid
    erin.wait(job.json()["id"])
    assert erin.call("GET", f"/jobs/{job.json()['id']}").json()["session_id"] == sid
    details = erin.call("GET", f"/sessions/{sid}").json()
    assert details["state"] == "inactive" and details["jobs"] == 1
    assert details["activated_at"] is not None and details["elapsed_time"] >= 0
    assert erin.call("PATCH", f"/sessions/{sid}", json={"accepting_jobs": False}).status_code == 204
    closed = erin.call("GET", f"/sessions/{sid}").json()
    assert (closed["state"], closed["accepting_jobs"]) == ("closed", False)
    refused = erin.run(session_id=sid)
    assert refused.status_code == 409 and error_of(refused)["code"] == "INVALID_STATE"
    again = erin.call("PATCH", f"/sessions/{sid}", json={"accepting_jobs": True})
    assert again.status_code == 409
    listed = erin.call("GET", "/jobs", params={"session_id": sid}).json()
    assert [j["id"] for j in listed["jobs"]] == [job.json()["id"]]


def test_session_job_takes_the_sessions_backend(erin: ModernApi) -> None:
    sid = _open(erin, mode="batch")["id"]
    job = erin.run(session_id=sid, backend=None)
    assert job.status_code == 201 and job.json()["backend"] == "aer_simulator"
    other = erin.run(session_id=sid, backend="basic_simulator")
    assert other.status_code == 400 and error_of(other)["code"] == "INVALID_BACKEND"
    erin.wait(job.json()["id"])
    assert erin.call("GET", f"/sessions/{sid}").json()["mode"] == "batch"


def test_cancel_closes_and_cancels_pending_jobs(erin: ModernApi) -> None:
    sid = _open(erin)["id"]
    done = erin.run(session_id=sid).json()["id"]
    erin.wait(done)
    assert erin.call("DELETE", f"/sessions/{sid}/close").status_code == 204
    details = erin.call("GET", f"/sessions/{sid}").json()
    assert details["state"] == "closed" and details["closed_at"] is not None
    assert erin.call("GET", f"/jobs/{done}").json()["status"] == "Completed"
    assert erin.run(session_id=sid).status_code == 409


def test_session_refusals(erin: ModernApi, service: RunningService) -> None:
    bad = [
        ({"mode": "shared", "backend": "aer_simulator"}, "INVALID_REQUEST"),
        ({"mode": "batch", "backend": "nope"}, "INVALID_BACKEND"),
        ({"mode": "batch"}, "INVALID_REQUEST"),
        ({"mode": "batch", "backend": "aer_simulator", "max_ttl": -1}, "INVALID_REQUEST"),
    ]
    for body, code in bad:
        answer = erin.call("POST", "/sessions", json=body)
        assert answer.status_code == 400 and error_of(answer)["code"] == code, body
    foreign = erin.call(
        "POST", "/sessions", json={"backend": "aer_simulator", "instance": "crn:v1:other"}
    )
    assert foreign.status_code == 403
    for method, path in [
        ("GET", "/sessions/" + "0" * 20),
        ("DELETE", "/sessions/" + "0" * 20 + "/close"),
    ]:
        answer = erin.call(method, path)
        assert answer.status_code == 404 and error_of(answer)["code"] == "SESSION_NOT_FOUND"
    patch = erin.call("PATCH", "/sessions/x", json={"accepting_jobs": "maybe"})
    assert patch.status_code == 400


def test_another_users_session_is_not_found(erin: ModernApi, service: RunningService) -> None:
    frank = ModernApi(service, service.add_user(unique("frank")))
    sid = _open(erin)["id"]
    assert frank.call("GET", f"/sessions/{sid}").status_code == 404
    stop = frank.call("PATCH", f"/sessions/{sid}", json={"accepting_jobs": False})
    assert stop.status_code == 404
    assert frank.call("DELETE", f"/sessions/{sid}/close").status_code == 404
    joined = frank.run(session_id=sid)
    assert joined.status_code == 404 and error_of(joined)["code"] == "SESSION_NOT_FOUND"
    assert erin.call("GET", f"/sessions/{sid}").json()["accepting_jobs"] is True
