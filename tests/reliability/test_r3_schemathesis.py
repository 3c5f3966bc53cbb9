"""R3: schemathesis over the service's whole OpenAPI document, every API surface (``/runtime`` for
programs and jobs, ``/api`` for the account, and the modern API's ``/api/v1``, ``/iam`` and
``/global-*``), with a user's token: no input, however malformed, may produce a 5xx, and every
error answer has the ``{"error": {...}}`` body.

Bounded to 15 examples per operation (a few hundred requests) so that it stays well under two
minutes; the figures come from the service's own request counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families
from reliability_support import BACKEND, PUBLISH_THEN_DOUBLE
from service_helpers import RunningService, start_service, stop_service

from prefect_qiskit_runtime.client import RuntimeService

TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """A service of its own: the fuzzer creates programs and jobs nobody else should see."""
    svc = start_service(Path(tmp_path_factory.mktemp("fuzz-home")), "--workers", "1")
    TOKENS["fuzzer"] = svc.add_user("fuzzer")
    client = RuntimeService(svc.url, TOKENS["fuzzer"])
    # Something to find: a program and a finished job, so that some generated ids may exist.
    program_id = client.upload_program(
        PUBLISH_THEN_DOUBLE, name="fuzz-target", description="r3", max_execution_time=60
    )
    client.set_program_visibility(program_id, True)
    assert client.run(program_id, BACKEND, {"x": 1}).result(timeout=120) == 2
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
    token = TOKENS["fuzzer"]
    # The modern routes take the API token as ``Authorization: apikey``, the old ones as a header.
    headers = {"X-Access-Token": token, "Authorization": f"apikey {token}"}
    response = case.call(headers=headers, timeout=60)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) >= {"message", "code"}


def test_r3_fuzzer_reached_the_service(
    fuzz_service: RunningService, figures: Callable[..., str]
) -> None:
    """The fuzz run above really sent a few hundred requests, to both surfaces, and none got 5xx."""
    metrics = requests.get(fuzz_service.url + "/metrics", timeout=30).text
    by_class: Counter[str] = Counter()
    surfaces: Counter[str] = Counter()
    operations: set[str] = set()
    for family in text_string_to_metric_families(metrics):
        if family.name != "pqr_http_requests":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            labels, count = sample.labels, int(sample.value)
            by_class[labels["status"][:1] + "xx"] += count
            route = labels["route"]
            modern = route.startswith(("/api/v1/", "/iam/", "/global-"))
            surfaces["modern" if modern else route.strip("/").split("/")[0]] += count
            operations.add(f"{labels['method']} {labels['route']}")
    total = sum(by_class.values())
    assert by_class["5xx"] == 0, metrics
    assert total >= 200
    assert surfaces["runtime"] > 0 and surfaces["api"] > 0 and surfaces["modern"] > 0, surfaces
    figures(
        "R3 schemathesis",
        requests=total,
        operations=len(operations),
        runtime_surface=surfaces["runtime"],
        api_surface=surfaces["api"],
        modern_surface=surfaces["modern"],
        answers=dict(sorted(by_class.items())),
        server_errors=by_class["5xx"],
    )
