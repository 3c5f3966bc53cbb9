"""The transport's retry policy against the real service behind a fault-injecting proxy: answers
lost after the service acted, 429 and 503, and the requests that must never be retried."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from client_support import BACKEND, DOUBLER, unique
from faultproxy import DROP, PASS, TOO_MANY, UNAVAILABLE, FaultProxy, every_nth_plan
from service_helpers import RunningService

from prefect_qiskit_runtime.client import RetryPolicy, RuntimeService
from prefect_qiskit_runtime.client.transport import normalise_root, parse_retry_after
from prefect_qiskit_runtime.core.exceptions import (
    IBMQInputValueError,
    RuntimeJobNotFound,
    RuntimeProgramNotFound,
    RuntimeServiceUnavailable,
)


@pytest.fixture
def proxy(service: RunningService) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session service (passing everything until told otherwise)."""
    fault_proxy = FaultProxy(service.url)
    yield fault_proxy
    fault_proxy.close()


def test_thirty_runs_through_lossy_proxy_give_thirty_jobs(
    service: RunningService, proxy: FaultProxy
) -> None:
    """A quarter of all answers are lost after the service acted; one in eight is 429, one 503."""
    token = service.add_user("alice")
    direct = RuntimeService(service.url, token)
    program_id = direct.upload_program(
        DOUBLER, name=unique("lossy"), description="d", max_execution_time=60
    )
    proxy.plan = every_nth_plan([PASS, DROP, PASS, TOO_MANY, PASS, DROP, PASS, UNAVAILABLE])
    client = RuntimeService(
        proxy.url, token, retry=RetryPolicy(max_attempts=6, initial_backoff=0.01)
    )
    jobs = [client.run(program_id, BACKEND, {"x": i}) for i in range(30)]
    assert [job.result(timeout=120) for job in jobs] == [2 * i for i in range(30)]
    assert len({job.job_id() for job in jobs}) == 30
    dropped_submissions = [
        e
        for e in proxy.exchanges
        if e.action == DROP and e.method == "POST" and e.status is not None and e.status < 300
    ]
    assert dropped_submissions, "some job submissions must have been acted on and their answer lost"
    assert proxy.count(TOO_MANY) and proxy.count(UNAVAILABLE)
    held = direct.jobs(limit=None, program_id=program_id)
    assert sorted(j.job_id() for j in held) == sorted(j.job_id() for j in jobs)


def test_retry_after_is_honoured(service: RunningService, proxy: FaultProxy) -> None:
    proxy.retry_after = 1
    proxy.plan = every_nth_plan([TOO_MANY, PASS])
    client = RuntimeService(proxy.url, service.add_user("alice"))
    assert client.backends()
    first, second = proxy.exchanges[:2]
    assert (first.action, second.action) == (TOO_MANY, PASS)
    assert second.at - first.at >= 1.0


def test_retries_are_bounded_and_end_in_service_unavailable(
    service: RunningService, proxy: FaultProxy
) -> None:
    proxy.plan = lambda n, method, path: UNAVAILABLE
    client = RuntimeService(
        proxy.url,
        service.add_user("alice"),
        retry=RetryPolicy(max_attempts=4, initial_backoff=0.01),
    )
    with pytest.raises(RuntimeServiceUnavailable) as unavailable:
        client.backends()
    assert unavailable.value.status_code == 503
    assert unavailable.value.retryable is True
    assert len(proxy.exchanges) == 4


def test_other_4xx_and_unkeyed_posts_are_never_retried(
    service: RunningService, proxy: FaultProxy
) -> None:
    client = RuntimeService(proxy.url, service.add_user("alice"))
    with pytest.raises(RuntimeProgramNotFound):
        client.program("no-such-program")
    assert [(e.method, e.status) for e in proxy.exchanges] == [("GET", 404)]
    proxy.plan = lambda n, method, path: UNAVAILABLE
    with pytest.raises(RuntimeServiceUnavailable):
        client.logout()  # a POST without an idempotency key
    assert len(proxy.exchanges) == 2


def test_delete_whose_answer_was_lost_still_succeeds(
    service: RunningService, proxy: FaultProxy
) -> None:
    client = RuntimeService(proxy.url, service.add_user("alice"))
    program_id = client.upload_program(
        DOUBLER, name=unique("del"), description="d", max_execution_time=60
    )
    job = client.run(program_id, BACKEND, {"x": 1})
    assert job.result() == 2
    start = len(proxy.exchanges)
    proxy.plan = lambda n, method, path: DROP if n == start else PASS
    client.delete_job(job.job_id())
    first, repeat = proxy.exchanges[start:]
    assert (first.method, first.action, repeat.method, repeat.status) == (
        "DELETE",
        DROP,
        "DELETE",
        404,
    )
    assert first.status is not None and first.status < 300  # the service did delete it
    with pytest.raises(RuntimeJobNotFound):
        client.job(job.job_id())


def test_unreachable_service_raises_service_unavailable() -> None:
    secret = unique("secret-token")
    client = RuntimeService(
        "http://127.0.0.1:9", secret, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01)
    )
    with pytest.raises(RuntimeServiceUnavailable) as unavailable:
        client.programs()
    assert unavailable.value.retryable is True
    assert secret not in str(unavailable.value)


def test_url_and_retry_after_parsing() -> None:
    assert normalise_root("https://h:1/api/") == "https://h:1"
    assert normalise_root("http://h/prefix/runtime") == "http://h/prefix"
    with pytest.raises(IBMQInputValueError):
        normalise_root("ftp://h")
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_result_waits_through_an_outage_longer_than_one_requests_retries(
    service: RunningService, proxy: FaultProxy
) -> None:
    """Ten lost results answers in a row (a request gives up after three attempts): ``result()``
    backs off and asks again until it gets the answer, well inside its timeout."""
    token = service.add_user("alice")
    program_id = RuntimeService(service.url, token).upload_program(
        DOUBLER, name=unique("outage"), description="d", max_execution_time=60
    )
    client = RuntimeService(
        proxy.url, token, retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0.01)
    )
    job = client.run(program_id, BACKEND, {"x": 21})
    lost: list[int] = []

    def plan(n: int, method: str, path: str) -> str:
        if path.split("?")[0].endswith("/results") and len(lost) < 10:
            lost.append(n)
            return DROP
        return PASS

    proxy.plan = plan
    assert job.result(timeout=120) == 42
    assert len(lost) == 10
    assert len(client.jobs(limit=None, program_id=program_id)) == 1


def test_result_gives_up_at_its_timeout_when_the_outage_outlasts_it(
    service: RunningService, proxy: FaultProxy
) -> None:
    """Every answer lost: ``result(timeout=3)`` raises ``RuntimeServiceUnavailable`` saying the
    wait ran out, and not much later than 3 s (no request retries past the caller's deadline)."""
    token = service.add_user("alice")
    program_id = RuntimeService(service.url, token).upload_program(
        DOUBLER, name=unique("outlasting"), description="d", max_execution_time=60
    )
    client = RuntimeService(proxy.url, token, retry=RetryPolicy(initial_backoff=0.05))
    job = client.run(program_id, BACKEND, {"x": 1})
    proxy.plan = lambda n, method, path: UNAVAILABLE
    started = time.monotonic()
    with pytest.raises(RuntimeServiceUnavailable, match="ran out after 3 seconds"):
        job.result(timeout=3)
    elapsed = time.monotonic() - started
    # It stops asking once the next backoff would end past the deadline, so it may raise up to
    # one backoff early; never long after the deadline.
    assert 1.0 <= elapsed < 6.0, elapsed
    assert sum(1 for e in proxy.exchanges if "/results" in e.path) >= 4
