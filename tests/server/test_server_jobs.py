"""Jobs over raw HTTP: spec/runtime-api.md §3.3-3.5 and §4, checklist items 21-44, plus idempotency
keys and the long-poll."""

from __future__ import annotations

import json
import threading
import uuid

import requests
from server_helpers import (
    BELL,
    FAILING,
    FINAL,
    ITERATIONS_SPEC,
    LOGGING,
    PUBLISHER,
    RICH_RESULT,
    SLEEPER,
    Api,
    unique,
)

STATUSES = FINAL | {"QUEUED", "RUNNING"}


def test_run_and_job_object(alice: Api) -> None:
    """Items 21, 23, 24, 29, 30: run without Content-Type; the job object has every field."""
    pid = alice.upload(PUBLISHER)
    params = {
        "iterations": 2,
        "z": {"__type__": "complex", "__value__": [1.0, 2.0]},
        "nested": {"a": [1, 2, {"b": None}]},
    }
    response = alice.post_json(
        "/jobs",
        {
            "program_id": pid,
            "hub": "local",
            "group": "default",
            "project": "main",
            "backend": "aer_simulator",
            "params": params,
            "runtime": "image:tag",
            "log_level": "info",
        },
    )
    assert response.status_code == 201
    job_id = response.json()["id"]
    job = alice.job(job_id)
    for key in (
        "id",
        "status",
        "backend",
        "hub",
        "group",
        "project",
        "program",
        "params",
        "created",
    ):
        assert job[key] is not None, key
    assert job["id"] == job_id
    assert job["program"] == {"id": pid}
    assert job["params"] == params
    assert job["backend"] == "aer_simulator"
    assert (job["hub"], job["group"], job["project"]) == ("local", "default", "main")
    assert job["status"] in STATUSES
    assert job["created"].endswith("Z")
    assert job["log_level"] == "INFO" and job["runtime"] == "image:tag"
    done = alice.wait(job_id)
    assert done["status"] == "COMPLETED"
    assert done["params"] == params
    assert done["message_count"] == 2
    assert done["started"] and done["ended"] and done["reason_code"] is None
    assert done["retryable"] is False
    assert alice.get(f"/jobs/{job_id}/results").text == '"foo"'


def test_unknown_program_is_404(alice: Api) -> None:
    """Item 22."""
    response = alice.post_json("/jobs", {"program_id": "nope", "backend": "aer_simulator"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "PROGRAM_NOT_FOUND"


def test_bad_submissions_are_4xx(alice: Api) -> None:
    """Unknown backend, too few qubits, another hub, a bad log level, malformed JSON: no job."""
    pid = alice.upload(PUBLISHER, spec={"backend_requirements": {"min_num_qubits": 20}})
    cases = [
        ({"program_id": pid, "backend": "no_such_backend"}, 400, "INVALID_BACKEND"),
        ({"program_id": pid, "backend": "fake_5q_device"}, 400, "BACKEND_REQUIREMENTS"),
        ({"program_id": pid, "backend": "aer_simulator", "hub": "ibm-q"}, 403, "FORBIDDEN"),
        ({"program_id": pid, "backend": "aer_simulator", "log_level": "LOUD"}, 400, None),
        ({"program_id": pid, "backend": "aer_simulator", "params": [1, 2]}, 400, "INVALID_INPUT"),
        ({"program_id": pid}, 400, None),
    ]
    for body, status, code in cases:
        response = alice.post_json("/jobs", body)
        assert response.status_code == status, (body, response.text)
        if code:
            assert response.json()["error"]["code"] == code
    assert alice.request("POST", "/jobs", data=b"{broken").status_code == 400
    assert alice.request("POST", "/jobs", data=b'"a string"').status_code == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    assert alice.request("POST", "/jobs", data=deep).status_code == 400
    nested_params = b'{"program_id": "hello-world", "backend": "aer_simulator", "params": ' + deep
    assert alice.request("POST", "/jobs", data=nested_params + b"}").status_code == 400
    ok = alice.run(pid, {"iterations": 0}, backend="fake_27q_device")
    assert alice.wait(ok)["status"] == "COMPLETED"


def test_params_as_json_string_or_one_element_list(alice: Api) -> None:
    """The other two forms of ``params`` the old client may produce are normalised to an object."""
    pid = alice.upload(PUBLISHER, spec=ITERATIONS_SPEC)
    as_text = alice.run(pid, json.dumps({"iterations": 0}))  # type: ignore[arg-type]
    as_list = alice.run(pid, [{"iterations": 0}])  # type: ignore[arg-type]
    assert alice.job(as_text)["params"] == {"iterations": 0}
    assert alice.job(as_list)["params"] == {"iterations": 0}


def test_result_round_trip_and_twice(alice: Api) -> None:
    """Item 26: a dict of str, float and complex comes back as RuntimeEncoder JSON, every time."""
    job_id = alice.run(alice.upload(RICH_RESULT))
    assert alice.wait(job_id)["status"] == "COMPLETED"
    first = alice.get(f"/jobs/{job_id}/results")
    assert first.headers["content-type"] == "text/plain; charset=utf-8"
    value = json.loads(first.text)
    assert value["s"] == "text" and value["f"] == 1.5
    assert value["c"] == {"__type__": "complex", "__value__": [1.0, 2.0]}
    assert alice.get(f"/jobs/{job_id}/results").text == first.text


def test_failed_job_results_hold_the_traceback(alice: Api) -> None:
    """Item 27."""
    job_id = alice.run(alice.upload(FAILING))
    job = alice.wait(job_id)
    assert job["status"] == "FAILED"
    assert job["reason_code"] == "PROGRAM_ERROR" and job["retryable"] is False
    text = alice.get(f"/jobs/{job_id}/results").text
    assert "KeyError" in text and "Traceback" in text


def test_ran_too_long(alice: Api) -> None:
    """Item 28 (with a 1 s limit instead of 60)."""
    job_id = alice.run(alice.upload(SLEEPER, cost=1), {"seconds": 120})
    job = alice.wait(job_id)
    assert job["status"] == "CANCELLED - RAN TOO LONG"
    assert job["reason_code"] == "RAN_TOO_LONG"
    assert "maximum execution time" in alice.get(f"/jobs/{job_id}/results").text


def test_results_while_running_is_204_and_cancelled_is_empty(alice: Api) -> None:
    """Items 31 and §4: cancel a RUNNING job; CANCELLED shows at once and stays."""
    job_id = alice.run(alice.upload(SLEEPER))
    alice.wait_running(job_id)
    assert alice.get(f"/jobs/{job_id}/results").status_code == 204
    assert alice.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
    assert alice.job(job_id)["status"] == "CANCELLED"
    # The executor reports the killed process later: its logs arrive, the status stays.
    job = alice.wait_for(
        job_id, lambda j: "sleeper started" in alice.get(f"/jobs/{j['id']}/logs").text
    )
    assert job["status"] == "CANCELLED" and job["reason_code"] == "CANCELLED_BY_USER"
    results = alice.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200 and results.text == ""
    again = alice.request("POST", f"/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "INVALID_STATE"


def test_cancel_queued_and_after_done(cap_user: Api) -> None:
    """Items 31-32: a QUEUED job is cancelled at once and never runs; a done job → 409."""
    sleeper = cap_user.upload(SLEEPER)
    blockers = [cap_user.run(sleeper) for _ in range(3)]
    for job_id in blockers:
        cap_user.wait_running(job_id)
    queued = cap_user.run(cap_user.upload(PUBLISHER))
    assert cap_user.job(queued)["status"] == "QUEUED"
    assert cap_user.request("POST", f"/jobs/{queued}/cancel").status_code == 204
    assert cap_user.job(queued)["status"] == "CANCELLED"
    for job_id in blockers:
        assert cap_user.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
    done = cap_user.run(cap_user.upload(PUBLISHER), {"iterations": 0})
    assert cap_user.wait(done)["status"] == "COMPLETED"
    assert cap_user.job(queued)["status"] == "CANCELLED"
    assert cap_user.job(queued)["started"] is None
    assert cap_user.request("POST", f"/jobs/{done}/cancel").status_code == 409


def test_memory_limit(cap_user: Api) -> None:
    """``--memory-limit-mb``: a program that allocates past it fails with MEMORY_LIMIT."""
    hog = "def main(backend, user_messenger):\n    return len(bytearray(2 * 1024**3))\n"
    job = cap_user.wait(cap_user.run(cap_user.upload(hog)))
    assert job["status"] == "FAILED" and job["reason_code"] == "MEMORY_LIMIT"
    assert "MemoryError" in cap_user.get(f"/jobs/{job['id']}/results").text


def test_delete_in_any_state(cap_user: Api) -> None:
    """Item 33: delete QUEUED, RUNNING and DONE jobs; running ones are stopped, slots freed."""
    done = cap_user.run(cap_user.upload(PUBLISHER), {"iterations": 0})
    cap_user.wait(done)
    sleeper = cap_user.upload(SLEEPER)
    running = [cap_user.run(sleeper) for _ in range(3)]
    for job_id in running:
        cap_user.wait_running(job_id)
    queued = cap_user.run(sleeper)
    assert cap_user.job(queued)["status"] == "QUEUED"
    for job_id in [done, queued, *running]:
        assert cap_user.request("DELETE", f"/jobs/{job_id}").status_code == 204
        response = cap_user.get(f"/jobs/{job_id}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "JOB_NOT_FOUND"
        assert cap_user.request("DELETE", f"/jobs/{job_id}").status_code == 404
    # All three slots are free again: three more jobs all complete.
    after = [cap_user.run(cap_user.upload(PUBLISHER), {"iterations": 0}) for _ in range(3)]
    assert all(cap_user.wait(j)["status"] == "COMPLETED" for j in after)


def test_listing_pagination(fresh: Api) -> None:
    """Items 34, 35, 38: limit, offset, count = max(total, offset), newest first."""
    pid = fresh.upload(PUBLISHER)
    ids = [fresh.run(pid, {"iterations": 0}) for _ in range(25)]
    newest_first = ids[::-1]
    page = fresh.get("/jobs", params={"limit": 21}).json()
    assert page["count"] == 25
    assert [j["id"] for j in page["jobs"]] == newest_first[:21]
    assert len(fresh.get("/jobs", params={"limit": 30}).json()["jobs"]) == 25
    rest = fresh.get("/jobs", params={"limit": 10, "offset": 21}).json()
    assert [j["id"] for j in rest["jobs"]] == newest_first[21:]
    two = fresh.get("/jobs", params={"limit": 2, "offset": 4}).json()
    assert [j["id"] for j in two["jobs"]] == newest_first[4:6]
    beyond = fresh.get("/jobs", params={"limit": 10, "offset": 50}).json()
    assert beyond == {"jobs": [], "count": 50}
    assert len(fresh.get("/jobs", params={"limit": 0}).json()["jobs"]) == 0
    assert fresh.get("/jobs", params={"limit": -1}).status_code == 400
    for job_id in ids:
        fresh.wait(job_id)


def test_pending_and_program_filters(cap_user: Api) -> None:
    """Items 36-37: 3 RUNNING, 4 COMPLETED, 2 QUEUED, 3 FAILED, 2 CANCELLED."""
    quick, failing, sleeper = (cap_user.upload(s) for s in (PUBLISHER, FAILING, SLEEPER))
    for job_id in [cap_user.run(quick, {"iterations": 0}) for _ in range(4)]:
        assert cap_user.wait(job_id)["status"] == "COMPLETED"
    for job_id in [cap_user.run(failing) for _ in range(3)]:
        assert cap_user.wait(job_id)["status"] == "FAILED"
    for job_id in [cap_user.run(sleeper) for _ in range(2)]:
        cap_user.request("POST", f"/jobs/{job_id}/cancel")
        assert cap_user.job(job_id)["status"] == "CANCELLED"
    running = [cap_user.run(sleeper) for _ in range(3)]
    for job_id in running:
        cap_user.wait_running(job_id)
    queued = [cap_user.run(sleeper) for _ in range(2)]
    assert {cap_user.job(j)["status"] for j in queued} == {"QUEUED"}

    def listing(**params: object) -> tuple[list[str], int]:
        body = cap_user.get("/jobs", params={"limit": 100, **params}).json()
        return [j["status"] for j in body["jobs"]], body["count"]

    pending, count = listing(pending="true")
    assert count == 5 and sorted(pending) == ["QUEUED"] * 2 + ["RUNNING"] * 3
    assert len(listing(pending="true", limit=4)[0]) == 4
    assert len(listing(pending="true", offset=4)[0]) == 1
    final, count = listing(pending="false")
    assert count == 9 and set(final) == {"COMPLETED", "FAILED", "CANCELLED"}
    assert len(listing(pending="false", limit=6, offset=2)[0]) == 6
    only_failing, count = listing(program=failing)
    assert count == 3 and set(only_failing) == {"FAILED"}
    assert listing(program="no-such-program") == ([], 0)


def test_logs(alice: Api) -> None:
    """Items 40-41: print, stderr and warnings always; logging at or above log_level."""
    pid = alice.upload(LOGGING)
    info = alice.run(pid, log_level="INFO")
    error = alice.run(pid, log_level="ERROR")
    alice.wait(info)
    alice.wait(error)
    info_logs = alice.get(f"/jobs/{info}/logs")
    assert info_logs.headers["content-type"] == "text/plain; charset=utf-8"
    for line in ("printed line", "stderr line", "a warning line", "info line", "error line"):
        assert line in info_logs.text, line
    error_logs = alice.get(f"/jobs/{error}/logs").text
    assert "error line" in error_logs and "info line" not in error_logs
    assert alice.get("/jobs/nope/logs").status_code == 404


def test_logout_keeps_the_token_working(alice: Api) -> None:
    """Item 42."""
    assert alice.request("POST", "/logout").status_code == 204
    assert alice.get("/programs", params={"limit": 1}).status_code == 200
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 0})
    assert alice.wait(job_id)["status"] == "COMPLETED"


def test_backend_runs_circuits(alice: Api) -> None:
    """Item 43 at the service level: a program runs a Bell circuit on the job's backend."""
    job_id = alice.run(alice.upload(BELL), {"shots": 100})
    assert alice.wait(job_id)["status"] == "COMPLETED", alice.get(f"/jobs/{job_id}/results").text
    counts = json.loads(alice.get(f"/jobs/{job_id}/results").text)
    assert sum(counts.values()) == 100
    assert set(counts) <= {"00", "11"}


def test_hello_world_end_to_end(alice: Api) -> None:
    """The built-in program: POST /jobs hello-world → interim counts → "All done!"."""
    job_id = alice.run("hello-world", {"iterations": 2})
    job = alice.wait(job_id)
    assert job["status"] == "COMPLETED", alice.get(f"/jobs/{job_id}/results").text
    assert json.loads(alice.get(f"/jobs/{job_id}/results").text) == "All done!"
    messages = alice.get(f"/jobs/{job_id}/interim_results").json()["messages"]
    assert [m["seq"] for m in messages] == [1, 2]
    assert [json.loads(m["message"])["iteration"] for m in messages] == [0, 1]


def test_idempotent_job_submission(fresh: Api, bob: Api) -> None:
    """A repeated key returns the first answer and creates no second job, even concurrently."""
    pid = fresh.upload(PUBLISHER, is_public=True)
    key = str(uuid.uuid4())
    headers = {"Idempotency-Key": key}
    body = {"program_id": pid, "backend": "aer_simulator", "params": {"iterations": 0}}
    answers: list[tuple[int, str]] = []

    def submit() -> None:
        response = fresh.post_json("/jobs", body, headers=headers, timeout=60)
        answers.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 8 and len(set(answers)) == 1 and answers[0][0] == 201
    # Another body with the same key: still the first answer (the key names the operation).
    other = fresh.post_json("/jobs", {**body, "params": {"iterations": 1}}, headers=headers)
    assert other.json()["id"] == answers[0][1]
    assert fresh.get("/jobs", params={"limit": 10}).json()["count"] == 1
    # Keys are per user.
    bobs = bob.post_json("/jobs", body, headers=headers)
    assert bobs.status_code == 201 and bobs.json()["id"] != answers[0][1]
    bob.wait(bobs.json()["id"])
    fresh.wait(answers[0][1])


def test_long_poll(alice: Api) -> None:
    """``?wait=`` answers once the job is final, or with the current state when time is up."""
    quick = alice.run(alice.upload(PUBLISHER), {"iterations": 1, "sleep": 0.5})
    response = alice.get(f"/jobs/{quick}", params={"wait": 60})
    assert response.status_code == 200
    assert response.json()["status"] == "COMPLETED"
    slow = alice.run(alice.upload(SLEEPER))
    pending = alice.get(f"/jobs/{slow}", params={"wait": 0.3}).json()
    assert pending["status"] in {"QUEUED", "RUNNING"}
    assert alice.get(f"/jobs/{slow}", params={"wait": -1}).status_code == 400
    assert alice.get(f"/jobs/{slow}", params={"wait": "soon"}).status_code == 400
    assert alice.get("/jobs/nope", params={"wait": 5}).status_code == 404
    # A long-poll in progress learns about a cancel at once.
    results: list[dict[str, object]] = []
    poller = threading.Thread(
        target=lambda: results.append(alice.get(f"/jobs/{slow}", params={"wait": 60}).json())
    )
    poller.start()
    alice.request("POST", f"/jobs/{slow}/cancel")
    poller.join(timeout=90)
    assert results and results[0]["status"] == "CANCELLED"


def test_results_long_poll(alice: Api) -> None:
    """Extension: ``/results?wait=`` answers with the result as soon as the job is final, or 204
    when time is up; ``X-Job-Status`` always names the job's status."""
    quick = alice.run(alice.upload(PUBLISHER), {"iterations": 1, "sleep": 0.5, "final": "done"})
    answer = alice.get(f"/jobs/{quick}/results", params={"wait": 60})
    assert answer.status_code == 200 and answer.headers["X-Job-Status"] == "COMPLETED"
    assert json.loads(answer.text) == "done"
    plain = alice.get(f"/jobs/{quick}/results")
    assert plain.text == answer.text and plain.headers["X-Job-Status"] == "COMPLETED"
    failing = alice.run(alice.upload(FAILING))
    failed = alice.get(f"/jobs/{failing}/results", params={"wait": 60})
    assert failed.status_code == 200 and failed.headers["X-Job-Status"] == "FAILED"
    assert "KeyError" in failed.text
    slow = alice.run(alice.upload(SLEEPER))
    pending = alice.get(f"/jobs/{slow}/results", params={"wait": 0.3})
    assert pending.status_code == 204 and pending.text == ""
    assert pending.headers["X-Job-Status"] in {"QUEUED", "RUNNING"}
    for bad in (-1, "soon"):
        assert alice.get(f"/jobs/{slow}/results", params={"wait": bad}).status_code == 400
    assert alice.get("/jobs/nope/results", params={"wait": 5}).status_code == 404
    # A waiting request learns about a cancel at once: the (empty) result of a cancelled job.
    answers: list[requests.Response] = []
    poller = threading.Thread(
        target=lambda: answers.append(alice.get(f"/jobs/{slow}/results", params={"wait": 60}))
    )
    poller.start()
    alice.request("POST", f"/jobs/{slow}/cancel")
    poller.join(timeout=90)
    assert answers and answers[0].status_code == 200 and answers[0].text == ""
    assert answers[0].headers["X-Job-Status"] == "CANCELLED"


def test_interim_results_endpoint(alice: Api) -> None:
    """Stored messages in order, numbered from 1 without gaps; ``after`` skips the first ones."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 4})
    alice.wait(job_id)
    messages = alice.get(f"/jobs/{job_id}/interim_results").json()["messages"]
    assert [m["seq"] for m in messages] == [1, 2, 3, 4]
    assert [json.loads(m["message"]) for m in messages] == [{"iteration": i} for i in range(4)]
    later = alice.get(f"/jobs/{job_id}/interim_results", params={"after": 2}).json()["messages"]
    assert [m["seq"] for m in later] == [3, 4]


def test_unique_program_names_per_user(alice: Api, fresh: Api) -> None:
    """Two users may both have a program called the same."""
    name = unique("shared-name")
    assert alice.upload(PUBLISHER, name) != fresh.upload(PUBLISHER, name)
