"""Programs over raw HTTP: spec/runtime-api.md §3.1-3.2 and checklist items 7-20, plus uploads as
multipart, idempotency keys, size limits and malformed input."""

from __future__ import annotations

import json
import uuid

import requests
from server_helpers import ITERATIONS_SPEC, PUBLISHER, Api, b64, unique

SPEC = {
    "backend_requirements": {"min_num_qubits": 2},
    "parameters": {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "type": "object",
        "properties": {
            "iterations": {"type": "integer", "description": "How many"},
            "z": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["iterations"],
    },
    "return_values": {"type": "string", "description": "done"},
    "interim_results": {"type": "object", "properties": {"iteration": {"type": "integer"}}},
}


def _error(response: requests.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    return dict(body["error"])


def test_upload_without_content_type_returns_id(alice: Api) -> None:
    """Item 7: the old client posts JSON with no Content-Type."""
    body = {"name": unique("p7"), "data": b64(PUBLISHER), "cost": 60, "description": "d"}
    response = alice.request("POST", "/programs", data=json.dumps(body).encode())
    assert "content-type" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 201
    assert set(response.json()) == {"id"}


def test_duplicate_name_is_409(alice: Api) -> None:
    """Item 8."""
    name = unique("dup")
    alice.upload(PUBLISHER, name)
    response = alice.post_json(
        "/programs", {"name": name, "data": b64(PUBLISHER), "cost": 60, "description": "d"}
    )
    assert response.status_code == 409
    assert _error(response)["code"] == "DUPLICATE_PROGRAM"


def test_upload_without_permission_is_403(bob: Api) -> None:
    """Item 9."""
    response = bob.post_json(
        "/programs",
        {"name": unique("nope"), "data": b64(PUBLISHER), "cost": 60, "description": "d"},
    )
    assert response.status_code == 403
    assert _error(response)["code"] == "FORBIDDEN"


def test_listing_pages_with_exact_count(fresh: Api) -> None:
    """Item 10: 23 new programs page as 20 + the rest, and ``count`` is exact."""
    before = fresh.get("/programs", params={"limit": 20}).json()["count"]
    ids = [fresh.upload(PUBLISHER, f"page-{i:02d}") for i in range(23)]
    first = fresh.get("/programs", params={"limit": 20}).json()
    assert first["count"] == before + 23
    assert len(first["programs"]) == 20
    seen = [p["id"] for p in first["programs"]]
    offset = len(seen)
    while len(set(seen)) < first["count"]:
        page = fresh.get("/programs", params={"limit": 20, "offset": offset}).json()
        assert page["programs"], "the listing ended before count programs were seen"
        seen += [p["id"] for p in page["programs"]]
        offset += len(page["programs"])
    assert len(seen) == len(set(seen)) == first["count"]
    assert set(ids) <= set(seen)
    # Oldest first: ours are the newest, in upload order, at the end.
    assert seen[-23:] == ids


def test_listing_is_oldest_first(fresh: Api) -> None:
    """Item 11: p1, p2, p3 keep their order; a page starting at p2 holds p2 and p3."""
    ids = [fresh.upload(PUBLISHER, f"order-{i}") for i in range(3)]
    count = fresh.get("/programs", params={"limit": 1}).json()["count"]
    page = fresh.get("/programs", params={"limit": 2, "offset": count - 2}).json()["programs"]
    assert [p["id"] for p in page] == ids[1:]
    assert all("data" not in p for p in page)


def test_program_fields_and_spec_round_trip(alice: Api) -> None:
    """Items 12-14: fields are non-empty, the spec comes back exactly, the author gets data."""
    pid = alice.upload(PUBLISHER, unique("fields"), cost=3000, is_public=True, spec=SPEC)
    program = alice.get(f"/programs/{pid}").json()
    assert program["id"] == pid
    for key in ("name", "description", "creation_date", "update_date"):
        assert program[key]
    assert program["cost"] == 3000
    assert program["is_public"] is True
    assert program["spec"] == SPEC
    assert json.dumps(program["spec"]) == json.dumps(SPEC)  # key order too
    assert program["data"] == PUBLISHER


def test_non_author_gets_no_data_and_private_is_404(alice: Api, bob: Api) -> None:
    """Item 15, and another user's private program is invisible."""
    public = alice.upload(PUBLISHER, unique("pub"), is_public=True)
    private = alice.upload(PUBLISHER, unique("priv"))
    response = bob.get(f"/programs/{public}")
    assert response.status_code == 200
    assert "data" not in response.json()
    assert bob.get(f"/programs/{private}").status_code == 404
    listed = {p["id"] for p in _all_programs(bob)}
    assert public in listed and private not in listed
    # Built-ins are public, owned by nobody, so nobody gets their source.
    hello = bob.get("/programs/hello-world")
    assert hello.status_code == 200 and "data" not in hello.json()


def _all_programs(api: Api) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    while True:
        page = api.get("/programs", params={"limit": 100, "offset": len(out)}).json()
        out += page["programs"]
        if len(out) >= page["count"] or not page["programs"]:
            return out


def test_unknown_program_is_404(alice: Api) -> None:
    """Item 16."""
    response = alice.get("/programs/no-such-program")
    assert response.status_code == 404
    assert _error(response)["code"] == "PROGRAM_NOT_FOUND"


def test_delete_program(alice: Api, bob: Api) -> None:
    """Item 17, and only the author may delete."""
    pid = alice.upload(PUBLISHER, unique("del"), is_public=True)
    assert bob.request("DELETE", f"/programs/{pid}").status_code == 403
    assert alice.request("DELETE", f"/programs/{pid}").status_code == 204
    assert alice.get(f"/programs/{pid}").status_code == 404
    assert alice.request("DELETE", f"/programs/{pid}").status_code == 404


def test_replace_data(alice: Api) -> None:
    """Item 18: PUT …/data takes the raw base64 text."""
    pid = alice.upload(PUBLISHER, unique("data"))
    before = alice.get(f"/programs/{pid}").json()
    new_source = PUBLISHER.replace('final="foo"', 'final="bar"')
    response = alice.request(
        "PUT",
        f"/programs/{pid}/data",
        data=b64(new_source),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 204
    after = alice.get(f"/programs/{pid}").json()
    assert after["data"] == new_source
    assert after["update_date"] > before["update_date"]
    bad = alice.request("PUT", f"/programs/{pid}/data", data=b"not base64!!")
    assert bad.status_code == 400
    assert alice.request("PUT", "/programs/nope/data", data=b64("x")).status_code == 404


def test_patch_metadata_merges_spec(alice: Api) -> None:
    """Item 19: PATCH name/description/cost/spec; spec merges per top-level key."""
    pid = alice.upload(PUBLISHER, unique("patch"), spec=SPEC)
    new_name = unique("renamed")
    response = alice.request(
        "PATCH",
        f"/programs/{pid}",
        json={
            "name": new_name,
            "description": "new description",
            "cost": 77,
            "spec": {"return_values": {"type": "integer"}},
        },
    )
    assert response.status_code == 204
    program = alice.get(f"/programs/{pid}").json()
    assert program["name"] == new_name
    assert program["description"] == "new description"
    assert program["cost"] == 77
    assert program["spec"]["return_values"] == {"type": "integer"}
    assert program["spec"]["parameters"] == SPEC["parameters"]
    assert alice.request("PATCH", "/programs/nope", json={"name": "x"}).status_code == 404
    bad = alice.request("PATCH", f"/programs/{pid}", json={"cost": "soon"})
    assert bad.status_code == 400


def test_visibility_flips(alice: Api, bob: Api) -> None:
    """Item 20."""
    pid = alice.upload(PUBLISHER, unique("vis"))
    assert alice.request("PUT", f"/programs/{pid}/public").status_code == 204
    assert alice.get(f"/programs/{pid}").json()["is_public"] is True
    assert bob.get(f"/programs/{pid}").status_code == 200
    assert bob.request("PUT", f"/programs/{pid}/private").status_code == 403
    assert alice.request("PUT", f"/programs/{pid}/private").status_code == 204
    assert alice.get(f"/programs/{pid}").json()["is_public"] is False
    assert bob.get(f"/programs/{pid}").status_code == 404
    assert alice.request("PUT", "/programs/nope/public").status_code == 404


def test_multipart_upload(alice: Api) -> None:
    """The form upload: a ``data`` file and a ``metadata`` JSON part."""
    metadata = {
        "name": unique("multi"),
        "description": "from a form",
        "max_execution_time": 123,
        "is_public": False,
        "spec": SPEC,
    }
    response = alice.request(
        "POST",
        "/programs",
        files={
            "data": ("program.py", PUBLISHER.encode(), "text/x-python"),
            "metadata": (None, json.dumps(metadata)),
        },
    )
    assert response.status_code == 201, response.text
    program = alice.get(f"/programs/{response.json()['id']}").json()
    assert program["data"] == PUBLISHER
    assert program["cost"] == 123
    assert program["spec"] == SPEC
    broken = alice.request(
        "POST",
        "/programs",
        files={"data": ("p.py", b"def main(): pass"), "metadata": (None, "{not json")},
    )
    assert broken.status_code == 400
    assert _error(broken)["code"] == "INVALID_METADATA"


def test_upload_idempotency_key(alice: Api) -> None:
    """A repeated key returns the first answer and creates nothing (no 409)."""
    key = str(uuid.uuid4())
    body = {"name": unique("idem"), "data": b64(PUBLISHER), "cost": 60, "description": "d"}
    first = alice.post_json("/programs", body, headers={"Idempotency-Key": key})
    second = alice.post_json("/programs", body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()


def test_malformed_uploads_are_400(alice: Api) -> None:
    """Malformed JSON, bad base64, bad metadata, an invalid JSON Schema: 400, never 500."""
    cases: list[bytes] = [
        b"{not json",
        b"[]",
        json.dumps({"name": "x", "data": "@@@", "cost": 1}).encode(),
        json.dumps({"name": "", "data": b64(PUBLISHER), "cost": 1}).encode(),
        json.dumps({"name": "x", "data": b64(PUBLISHER), "cost": -1}).encode(),
        json.dumps({"name": "x", "data": b64(PUBLISHER), "cost": 1, "spec": []}).encode(),
        json.dumps(
            {"name": "x", "data": b64(PUBLISHER), "cost": 1, "spec": {"parameters": {"type": 5}}}
        ).encode(),
        json.dumps({"name": "x", "data": b64("\xff\x00"), "cost": 1}).encode(),
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the JSON parser's recursion limit
    ]
    for raw in cases:
        response = alice.request("POST", "/programs", data=raw)
        assert response.status_code == 400, (raw, response.text)
        _error(response)


def test_oversize_upload_is_413(alice: Api) -> None:
    """Bodies over the limit (10 MB by default) are refused, with or without Content-Length."""
    big = b"x" * (11 * 1024 * 1024)
    response = alice.request("POST", "/programs", data=big)
    assert response.status_code == 413
    assert _error(response)["code"] == "PAYLOAD_TOO_LARGE"

    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    chunked = alice.request("POST", "/programs", data=chunks())
    assert chunked.status_code == 413


def test_spec_parameters_validate_inputs(alice: Api) -> None:
    """Inputs are checked against spec.parameters before the job is queued."""
    pid = alice.upload(PUBLISHER, unique("schema"), spec=ITERATIONS_SPEC)
    missing = alice.post_json(
        "/jobs", {"program_id": pid, "backend": "aer_simulator", "params": {}}
    )
    assert missing.status_code == 400
    error = _error(missing)
    assert error["code"] == "INVALID_INPUT" and "iterations" in error["message"]
    wrong = alice.post_json(
        "/jobs", {"program_id": pid, "backend": "aer_simulator", "params": {"iterations": "x"}}
    )
    assert wrong.status_code == 400 and "iterations" in _error(wrong)["message"]
    # A ParameterNamespace sends unset inputs as null plus its two private keys.
    namespace = {
        "iterations": 0,
        "unset": None,
        "_ParameterNamespace__metadata": {"name": "x"},
        "_ParameterNamespace__program_params": {},
    }
    job_id = alice.run(pid, namespace)
    assert alice.job(job_id)["params"] == namespace
    assert alice.wait(job_id)["status"] == "COMPLETED"
