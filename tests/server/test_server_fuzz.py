"""API fuzzing with schemathesis against the service's own OpenAPI document: no input, however
malformed, may produce a 5xx, and every error answer has the ``{"error": {...}}`` body.

Bounded to a few hundred examples in total so that it stays well under two minutes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from server_helpers import PUBLISHER, make_api
from service_helpers import RunningService, start_service, stop_service

TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service of its own: the fuzzer creates programs and jobs nobody else should see."""
    svc = start_service(Path(tmp_path_factory.mktemp("fuzz-home")), "--workers", "1")
    api = make_api(svc, "fuzzer", True)
    TOKENS["fuzzer"] = api.token
    # Something to find: a program and a finished job, so that some generated ids may exist.
    job_id = api.run(api.upload(PUBLISHER, "fuzz-target", is_public=True), {"iterations": 1})
    api.wait(job_id)
    yield svc
    stop_service(svc)


@pytest.fixture(scope="module")
def api_schema(fuzz_service: RunningService) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_service.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    """Every operation, with generated (mostly invalid) input: status < 500, JSON error bodies."""
    if case.path == "/runtime/jobs/{job_id}" and case.method == "GET" and case.query:
        # Keep long-polls short: a generated wait of up to 60 s on an existing job is legal.
        case.query.pop("wait", None)
    response = case.call(headers={"X-Access-Token": TOKENS["fuzzer"]}, timeout=60)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) >= {"message", "code"}


def test_fuzzer_reached_the_service(fuzz_service: RunningService) -> None:
    """The fuzz run above really sent a few hundred requests (and none answered 5xx)."""
    metrics = requests.get(fuzz_service.url + "/metrics", timeout=30).text
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("pqr_http_requests_total{"):
            assert 'status="5' not in line, line
            total += float(line.rsplit(" ", 1)[1])
    assert total >= 200
