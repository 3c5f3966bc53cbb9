"""Two service instances on one database share the queue: each job runs once, a long-poll, a stream
or a cancel works through either instance, whichever one runs the job."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from database_helpers import fresh_schema, postgres_base_url
from prometheus_client.parser import text_string_to_metric_families
from server_helpers import PUBLISHER, SLEEPER, Api
from service_helpers import cli, start_service, stop_service
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, Api]]:
    """Two instances on one database: a SQLite file, then a PostgreSQL schema (whose instances
    also pass job events to each other through the relay)."""
    root = Path(tmp_path_factory.mktemp("shared-db"))
    if request.param == "sqlite":
        yield from _pair(root, f"sqlite:///{root / 'shared.db'}")
    else:
        for url in fresh_schema(postgres_base_url(request.config)):
            yield from _pair(root, url)


def _pair(root: Path, url: str) -> Iterator[tuple[Api, Api]]:
    first = start_service(root / "a", "--database-url", url, "--workers", "1")
    second = start_service(root / "b", "--database-url", url, "--workers", "1")
    out = cli("users", "add", "shared", "--can-upload", "--home", str(root), "--database-url", url)
    token = out.stdout.strip().splitlines()[-1]
    try:
        yield Api(first.url, token), Api(second.url, token)
    finally:
        stop_service(first)
        stop_service(second)


def _running_here(api: Api) -> int:
    return int(requests.get(api.url + "/health", timeout=30).json()["running_jobs"])


def _runner_and_other(a: Api, b: Api) -> tuple[Api, Api]:
    """The instance running the (only) job, and the other one."""
    deadline = time.monotonic() + 60
    while not (runner := next((api for api in (a, b) if _running_here(api)), None)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return runner, b if runner is a else a


def test_each_job_runs_once_and_either_instance_answers(
    pair: tuple[Api, Api],
) -> None:
    a, b = pair
    program = a.upload(PUBLISHER)
    ids = [a.run(program, {"iterations": 2}) for _ in range(6)]
    for job_id in ids:
        job = b.wait(job_id)  # long-poll through the other instance
        assert job["status"] == "COMPLETED" and job["message_count"] == 2
        assert b.get(f"/jobs/{job_id}/results").text == '"foo"'
    instances = {
        requests.get(api.url + "/health", timeout=30).json()["instance_id"] for api in (a, b)
    }
    assert len(instances) == 2


def test_cancel_through_the_other_instance(pair: tuple[Api, Api]) -> None:
    a, b = pair
    job_id = a.run(a.upload(SLEEPER))
    a.wait_running(job_id)
    runner, other = _runner_and_other(a, b)
    assert other.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
    assert runner.job(job_id)["status"] == "CANCELLED"
    # The instance running it notices the cancel in the store and kills the program.
    job = runner.wait_for(
        job_id, lambda j: "sleeper started" in runner.get(f"/jobs/{j['id']}/logs").text
    )
    assert job["status"] == "CANCELLED"
    assert _running_here(runner) == 0


def test_stream_through_either_instance(pair: tuple[Api, Api]) -> None:
    a, b = pair
    job_id = a.run(a.upload(PUBLISHER), {"iterations": 3, "sleep": 0.3})
    frames: list[str] = []
    with connect(
        f"{b.ws}/stream/jobs/{job_id}?after=0",
        additional_headers={"X-Access-Token": b.token},
        open_timeout=60,
    ) as ws:
        try:
            while True:
                frames.append(str(ws.recv(timeout=120)))
        except ConnectionClosed as exc:
            assert exc.rcvd is not None and exc.rcvd.code == 1000
    assert frames[0] == "ACK"
    assert [json.loads(f)["seq"] for f in frames[1:]] == [1, 2, 3]


ECHO = """
def main(backend, user_messenger, **kwargs):
    user_messenger.publish("serving")
    while (call := user_messenger.receive(timeout=120)) is not None:
        call.reply(call.value)
    return "ended"
"""


def test_channel_is_served_where_the_job_runs(pair: tuple[Api, Api]) -> None:
    """The instance running the job serves its channel; the other refuses it with 4409."""
    from prefect_qiskit_runtime.client import RuntimeService
    from prefect_qiskit_runtime.core.exceptions import RuntimeChannelError

    a, b = pair
    job_id = a.run(a.upload(ECHO))
    a.wait_running(job_id)
    runner, other = _runner_and_other(a, b)
    with (
        connect(
            f"{other.ws}/jobs/{job_id}/channel",
            additional_headers={"X-Access-Token": other.token},
            open_timeout=60,
        ) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4409
    assert "another instance" in closed.value.rcvd.reason
    with pytest.raises(RuntimeChannelError) as refused:
        RuntimeService(url=other.url, token=other.token).open_channel(job_id).call(1)
    assert refused.value.error_code == "CHANNEL_UNAVAILABLE" and not refused.value.retryable
    with RuntimeService(url=runner.url, token=runner.token).open_channel(job_id) as channel:
        assert channel.call({"x": [1, 2]}) == {"x": [1, 2]}
    assert runner.wait(job_id)["status"] == "COMPLETED"


def _relayed(api: Api) -> dict[str, float]:
    text = requests.get(api.url + "/metrics", timeout=30).text
    return {
        sample.labels["direction"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "pqr_relay_notifications"
        for sample in family.samples
    }


def test_job_events_pass_between_instances_on_postgresql(
    pair: tuple[Api, Api], request: pytest.FixtureRequest
) -> None:
    """On PostgreSQL each instance announces its jobs' events to the other (LISTEN/NOTIFY), so a
    waiter on the other instance learns at once; on SQLite nothing is relayed (waiters re-read)."""
    a, b = pair
    before = [_relayed(api) for api in (a, b)]
    job_id = a.run(a.upload(PUBLISHER), {"iterations": 3})
    assert b.wait(job_id)["status"] == "COMPLETED"

    def relayed() -> tuple[float, float]:
        after = [_relayed(api) for api in (a, b)]
        sent = sum(after[n]["sent"] - before[n]["sent"] for n in range(2))
        return sent, sum(after[n]["received"] - before[n]["received"] for n in range(2))

    if "postgresql" in request.node.callspec.id:
        # At least the job's end, from its runner; received by the time the waiter returned,
        # unless the waiter found the job already ended: then shortly after.
        deadline = time.monotonic() + 30
        while (counts := relayed()) < (1, 1) or min(counts) < 1:
            assert time.monotonic() < deadline, counts
            time.sleep(0.05)
    else:
        assert relayed() == (0, 0)
