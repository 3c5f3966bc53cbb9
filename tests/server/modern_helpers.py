"""A raw HTTP client of the modern API (``/iam``, ``/api/v1``) for the service-core tests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from service_helpers import RunningService

from prefect_qiskit_runtime.core.codec import RuntimeEncoder

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def bell_params(shots: int = 100, **options: Any) -> dict[str, Any]:
    """``params`` of a SamplerV2 job sampling the Bell circuit, as the modern client sends them."""
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure_all()
    params = {"pubs": [(circuit, None, shots)], "options": options, "version": 2}
    decoded: dict[str, Any] = json.loads(json.dumps(params, cls=RuntimeEncoder))
    return decoded


def token_for(service: RunningService, api_token: str) -> requests.Response:
    """``POST /iam/identity/token`` with an API key."""
    return requests.post(
        service.url + "/iam/identity/token",
        data={"grant_type": APIKEY_GRANT, "apikey": api_token},
        timeout=30,
    )


@dataclass
class ModernApi:
    """One user of the modern API: its bearer token and instance."""

    service: RunningService
    api_token: str
    access_token: str = ""
    crn: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        answer = token_for(self.service, self.api_token)
        answer.raise_for_status()
        self.access_token = answer.json()["access_token"]
        search = requests.post(
            self.service.url + "/global-search/v3/resources/search",
            json={"query": "service_name:quantum-computing"},
            headers={"Authorization": f"Bearer {self.access_token}"},
            timeout=30,
        )
        search.raise_for_status()
        self.crn = search.json()["items"][0]["crn"]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "Service-CRN": self.crn}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request to ``/api/v1{path}`` as this user."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        url = self.service.url + "/api/v1" + path
        return self.session.request(method, url, headers=headers, timeout=60, **kwargs)

    def run(self, program: str = "sampler", **body: Any) -> requests.Response:
        """``POST /api/v1/jobs`` (Bell circuit on aer_simulator unless ``body`` says otherwise)."""
        payload = {"program_id": program, "backend": "aer_simulator", "params": bell_params()}
        payload.update(body)
        return self.call("POST", "/jobs", json=payload)

    def wait(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        """The job once final (waiting with the old API's long-poll on the same job)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            old = requests.get(
                f"{self.service.runtime}/jobs/{job_id}",
                params={"wait": 30},
                headers={"X-Access-Token": self.api_token},
                timeout=60,
            ).json()
            if old["status"] not in ("QUEUED", "RUNNING"):
                break
        job: dict[str, Any] = self.call("GET", f"/jobs/{job_id}").json()
        return job


def error_of(answer: requests.Response) -> dict[str, Any]:
    """The ``error`` object of an error answer (asserting the service's error shape)."""
    body = answer.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert {"message", "code"} <= set(error)
    return error
