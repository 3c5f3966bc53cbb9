"""R1: a lossy network between client and service loses nothing and duplicates nothing.

Part one goes through an HTTP proxy that drops answers after the service acted and loses requests
before they reach it: every run gives exactly one job and its result, and every job's interim
results are stored exactly once. Part two streams interim results through a TCP proxy that cuts
every connection (websockets included) over and over: each callback sees each message once, in
order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faultproxy import DROP, LOSE, PASS, FaultProxy, TcpProxy, every_nth_plan
from reliability_support import BACKEND, PUBLISH_THEN_DOUBLE
from service_helpers import RunningService

from prefect_qiskit_runtime.client import RetryPolicy, RuntimeService

RUNS = 40
STREAMED_JOBS = 8
STREAMED_MESSAGES = 25


@pytest.fixture
def program(service: RunningService) -> Iterator[tuple[str, str]]:
    """A fresh publishing program of user ``alice``; yields ``(program_id, token)``."""
    token = service.add_user("alice")
    direct = RuntimeService(service.url, token)
    program_id = direct.upload_program(
        PUBLISH_THEN_DOUBLE, name=f"r1-{time.time_ns()}", description="r1", max_execution_time=120
    )
    yield program_id, token
    direct.delete_program(program_id)


def test_r1_lossy_network(
    service: RunningService, program: tuple[str, str], figures: Callable[..., str]
) -> None:
    program_id, token = program
    direct = RuntimeService(service.url, token)
    # One answer in five dropped after the service acted, one request in five lost before it.
    plan = every_nth_plan([PASS, DROP, PASS, LOSE, PASS, PASS, LOSE, PASS, DROP, PASS])
    proxy = FaultProxy(service.url, plan)
    try:
        client = RuntimeService(
            proxy.url, token, retry=RetryPolicy(max_attempts=8, initial_backoff=0.01, jitter=0.01)
        )
        jobs = [client.run(program_id, BACKEND, {"x": i}) for i in range(RUNS)]
        results = [job.result(timeout=180) for job in jobs]
        interim = [job.interim_results() for job in jobs]
    finally:
        proxy.close()
    assert results == [2 * i for i in range(RUNS)]
    held = direct.jobs(limit=None, program_id=program_id)
    duplicates = len(held) - len({j.job_id() for j in jobs})
    assert sorted(j.job_id() for j in held) == sorted(j.job_id() for j in jobs)
    assert interim == [[{"x": i, "i": k} for k in range(3)] for i in range(RUNS)]
    dropped = sum(1 for e in proxy.exchanges if e.action == DROP)
    lost = proxy.count(LOSE)
    assert dropped and lost

    streamed = _streams_through_cuts(service, program_id, token)
    figures(
        "R1 lossy network",
        runs=RUNS,
        results=len(results),
        jobs_stored=len(held),
        duplicate_jobs=duplicates,
        answers_dropped_after_acting=dropped,
        requests_lost_before=lost,
        interim_stored_exactly_once=f"{sum(map(len, interim))}/{3 * RUNS}",
        **streamed,
    )


def _streams_through_cuts(service: RunningService, program_id: str, token: str) -> dict[str, Any]:
    tcp = TcpProxy(service.url)
    received: dict[str, list[Any]] = {}
    lock = threading.Lock()

    def callback(job_id: str, message: Any) -> None:
        with lock:
            received.setdefault(job_id, []).append(message)

    stop = threading.Event()
    cuts = 0

    def cutter() -> None:
        nonlocal cuts
        while not stop.wait(0.15):
            cuts += 1 if tcp.cut() else 0

    client = RuntimeService(
        tcp.url, token, retry=RetryPolicy(max_attempts=10, initial_backoff=0.02)
    )
    thread = threading.Thread(target=cutter, daemon=True)
    thread.start()
    try:
        jobs = [
            client.run(
                program_id,
                BACKEND,
                {"x": i, "count": STREAMED_MESSAGES, "pause": 0.02},
                callback=callback,
            )
            for i in range(STREAMED_JOBS)
        ]
        results = [job.result(timeout=180) for job in jobs]
    finally:
        stop.set()
        thread.join()
        tcp.cut()
    assert results == [2 * i for i in range(STREAMED_JOBS)]
    for i, job in enumerate(jobs):
        assert received.get(job.job_id()) == [{"x": i, "i": k} for k in range(STREAMED_MESSAGES)], (
            job.job_id()
        )
    assert cuts >= 3, "the connections must have been cut while the jobs ran"
    delivered = sum(len(v) for v in received.values())
    return {
        "streamed": f"{delivered}/{STREAMED_JOBS * STREAMED_MESSAGES} once and in order",
        "connection_cuts": cuts,
        "connections_opened": tcp.accepted,
    }
