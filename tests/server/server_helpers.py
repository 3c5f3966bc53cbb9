"""Helpers of the service-core tests: a raw HTTP client per user and the test programs."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from service_helpers import RunningService

# Publishes ``iterations`` messages {"iteration": i}, sleeping ``sleep`` seconds after each, then
# publishes ``final`` as the final result.
PUBLISHER = """
import time

def main(backend, user_messenger, iterations=3, sleep=0.0, final="foo", **kwargs):
    for i in range(iterations):
        user_messenger.publish({"iteration": i})
        if sleep:
            time.sleep(sleep)
    user_messenger.publish(final, final=True)
"""

# Prints a line (flushed, so it reaches the logs even if the job is killed), then sleeps.
SLEEPER = """
import sys
import time

def main(backend, user_messenger, seconds=600, **kwargs):
    print("sleeper started", flush=True)
    user_messenger.publish({"started": True})
    time.sleep(seconds)
    return "woke up"
"""

FAILING = """
def main(backend, user_messenger, **kwargs):
    return kwargs["no-such-input"]
"""

LOGGING = """
import logging
import sys
import warnings

def main(backend, user_messenger, **kwargs):
    print("printed line")
    print("stderr line", file=sys.stderr)
    warnings.warn("a warning line")
    logging.getLogger("prog").info("info line")
    logging.getLogger("prog").error("error line")
    return "ok"
"""

RICH_RESULT = """
def main(backend, user_messenger, **kwargs):
    user_messenger.publish({"s": "text", "f": 1.5, "c": complex(1, 2)}, final=True)
"""

BELL = """
from qiskit import QuantumCircuit, transpile

def main(backend, user_messenger, shots=100, **kwargs):
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    counts = backend.run(transpile(qc, backend), shots=shots).result().get_counts()
    return dict(counts)
"""

ITERATIONS_SPEC = {
    "parameters": {
        "type": "object",
        "properties": {"iterations": {"type": "integer", "minimum": 0}},
        "required": ["iterations"],
    }
}


def b64(source: str) -> str:
    """Standard base64 of a program source, as the upload body wants it."""
    return base64.b64encode(source.encode()).decode()


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Api:
    """A raw HTTP client of the runtime API for one token."""

    url: str
    token: str
    session: requests.Session = field(default_factory=requests.Session)
    #: Passed to every request (a CA bundle path for a self-signed service): a session's own
    #: ``verify`` loses against ``REQUESTS_CA_BUNDLE`` in the environment.
    verify: bool | str = True

    @property
    def runtime(self) -> str:
        return self.url + "/runtime"

    @property
    def ws(self) -> str:
        return "ws" + self.runtime[4:]

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"X-Access-Token": self.token, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("verify", self.verify)
        return self.session.request(method, self.runtime + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post_json(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        """POST a JSON body without a Content-Type, as the old client does."""
        return self.request("POST", path, data=json.dumps(body).encode(), **kwargs)

    def upload(
        self,
        source: str,
        name: str | None = None,
        *,
        cost: int = 120,
        is_public: bool = False,
        spec: dict[str, Any] | None = None,
        description: str = "a test program",
        **kwargs: Any,
    ) -> str:
        body: dict[str, Any] = {
            "name": name or unique("prog"),
            "data": b64(source),
            "cost": cost,
            "description": description,
            "is_public": is_public,
        }
        if spec is not None:
            body["spec"] = spec
        response = self.post_json("/programs", body, **kwargs)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def run(
        self,
        program_id: str,
        params: dict[str, Any] | None = None,
        *,
        backend: str = "aer_simulator",
        expect: int = 201,
        **extra: Any,
    ) -> str:
        body = {
            "program_id": program_id,
            "hub": "local",
            "group": "default",
            "project": "main",
            "backend": backend,
            "params": params or {},
            "runtime": None,
            **extra,
        }
        response = self.post_json("/jobs", body)
        assert response.status_code == expect, response.text
        return str(response.json().get("id", ""))

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        """Long-poll until the job is final."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/jobs/{job_id}", params={"wait": 30})
            assert response.status_code == 200, response.text
            job = dict(response.json())
            if job["status"] in FINAL:
                return job
            assert time.monotonic() < deadline, f"job {job_id} not final: {job}"

    def wait_for(self, job_id: str, predicate: Any, timeout: float = 120) -> dict[str, Any]:
        """Poll the job until ``predicate(job)`` holds (a condition with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if predicate(job):
                return job
            assert time.monotonic() < deadline, f"condition not met for job {job_id}: {job}"
            time.sleep(0.05)

    def wait_running(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the program has really started: RUNNING and its first interim result stored.

        RUNNING alone is not enough: a job submitted to an idle service is RUNNING from its
        submission, before its process exists. Every program these tests wait on publishes once
        when it starts (see ``SLEEPER``)."""
        return self.wait_for(
            job_id, lambda j: j["status"] == "RUNNING" and j["message_count"] >= 1, timeout
        )

    def cancel_pending(self) -> None:
        """Cancel every QUEUED or RUNNING job of this user (test clean-up)."""
        jobs = self.get("/jobs", params={"pending": "true", "limit": 1000}).json()["jobs"]
        for job in jobs:
            self.request("POST", f"/jobs/{job['id']}/cancel")


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CANCELLED - RAN TOO LONG"}


def make_api(service: RunningService, name: str, can_upload: bool = True) -> Api:
    """A client for user ``name`` of ``service`` (created on first use)."""
    return Api(service.url, service.add_user(name, can_upload=can_upload))
