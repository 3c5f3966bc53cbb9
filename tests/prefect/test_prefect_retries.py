"""Retries never duplicate: a lost answer after the service acted, and a lost worker.

The fault is injected at the client's transport: the request reaches the service and is carried out,
then the client raises ``RuntimeServiceUnavailable`` (marked retryable) as if the answer had been
lost through every transport retry. Prefect retries the task; the service must still hold one job.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterTaskRunId

from prefect_qiskit_runtime.client.transport import Transport
from prefect_qiskit_runtime.core.exceptions import RuntimeServiceUnavailable
from prefect_qiskit_runtime.prefect.tasks import run_and_await, run_program, upload_program
from prefect_qiskit_runtime.prefect.tasks._observe import _JobObserver

SELF_KILLING_PROGRAM = """
import os
import signal
import socket


def main(backend, user_messenger, oracle_port):
    with socket.create_connection(("127.0.0.1", oracle_port), timeout=30) as sock:
        verdict = sock.recv(16)
    if verdict == b"die":
        os.kill(os.getpid(), signal.SIGKILL)  # the worker is lost, as if the node died
    return "survived"
"""


@contextlib.contextmanager
def first_caller_dies() -> Iterator[int]:
    """A local TCP oracle telling the first job that asks to die and every later one to live.

    A job cannot leave a mark on the filesystem for the next one: its sandbox confines it to its
    own directory. Yields the port.
    """
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def answer() -> None:
        verdicts = iter([b"die"])
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(next(verdicts, b"live"))

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=10)
        server.close()


class LoseAnswers:
    """Wraps ``Transport.request``: after ``count`` matching requests succeed, their answer is
    lost."""

    def __init__(self, method: str, path: str, count: int = 1) -> None:
        self.method, self.path, self.remaining = method, path, count
        self.keys: list[str | None] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = Transport.request

        def request(transport: Transport, method: str, path: str, **kwargs: Any) -> Any:
            response = real(transport, method, path, **kwargs)
            if method.upper() == self.method and path == self.path:
                self.keys.append(kwargs.get("idempotency_key"))
                if self.remaining > 0:
                    self.remaining -= 1
                    raise RuntimeServiceUnavailable(
                        f"{method} {path}: the answer was lost (injected)", retryable=True
                    )
            return response

        monkeypatch.setattr(Transport, "request", request)


@pytest.fixture
def lose_job_answer(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoseAnswers]:
    fault = LoseAnswers("POST", "/jobs")
    fault.install(monkeypatch)
    yield fault


def hello_with_retries(backend: Any, retries: int) -> tuple[Any, Any]:
    """``hello-world`` through ``run_and_await`` allowed ``retries``: its result and task run id."""

    @flow
    def submit() -> tuple[Any, Any]:
        state = run_and_await.with_options(retries=retries, retry_delay_seconds=0)(
            backend, "hello-world", {"iterations": 1}, return_state=True
        )
        return state.result(), state.state_details.task_run_id

    return submit()


def test_retry_after_lost_answer_makes_no_second_job(
    backend: Any, runtime: Any, lose_job_answer: LoseAnswers, task_run_in_api: Any
) -> None:
    before = len(runtime.jobs(limit=None, program_id="hello-world"))

    result, task_run_id = hello_with_retries(backend, 2)
    assert result == "All done!"
    assert task_run_in_api(task_run_id).run_count == 2  # the lost answer: one Prefect retry
    assert len(lose_job_answer.keys) == 2 and lose_job_answer.keys[0] == lose_job_answer.keys[1]
    assert str(task_run_id) in str(lose_job_answer.keys[0])  # the key derives from the task run
    assert len(runtime.jobs(limit=None, program_id="hello-world")) == before + 1


def test_a_retry_after_the_job_ended_adds_no_second_link_or_metrics_row(
    backend: Any, monkeypatch: pytest.MonkeyPatch, task_run_in_api: Any
) -> None:
    """The first attempt links the job and records its metrics, then fails retryably."""
    real_finish = _JobObserver.finish
    failures = [RuntimeServiceUnavailable("lost after the job ended (injected)", retryable=True)]

    def finish_then_fail(observer: _JobObserver, metrics: dict[str, Any]) -> None:
        real_finish(observer, metrics)
        if failures:
            raise failures.pop()

    monkeypatch.setattr(_JobObserver, "finish", finish_then_fail)

    result, task_run_id = hello_with_retries(backend, 1)
    assert result == "All done!"
    assert task_run_in_api(task_run_id).run_count == 2
    only_ours = ArtifactFilter(task_run_id=ArtifactFilterTaskRunId(any_=[task_run_id]))
    with get_client(sync_client=True) as client:
        kinds = sorted(a.type for a in client.read_artifacts(artifact_filter=only_ours))
    # The retry waited for the same job: still one link (a markdown artifact to Prefect) and one
    # metrics row; the progress artifact is per attempt.
    assert kinds == ["markdown", "progress", "progress", "table"]


def test_run_program_retry_returns_the_same_job(
    backend: Any, runtime: Any, lose_job_answer: LoseAnswers
) -> None:
    before = {j.job_id() for j in runtime.jobs(limit=None)}

    @flow
    def submit() -> str:
        return run_program.with_options(retries=1, retry_delay_seconds=0)(
            backend, "hello-world", {"iterations": 0}
        )

    job_id = submit()
    new = [j.job_id() for j in runtime.jobs(limit=None) if j.job_id() not in before]
    assert new == [job_id]


def test_upload_retry_makes_one_program(
    backend: Any, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = LoseAnswers("POST", "/programs")
    fault.install(monkeypatch)
    name = "prefect-upload-retry"

    @flow
    def upload() -> str:
        return upload_program.with_options(retries=1, retry_delay_seconds=0)(
            backend,
            SELF_KILLING_PROGRAM,
            {"name": name, "description": "retry test", "max_execution_time": 60},
        )

    program_id = upload()
    try:
        assert len(fault.keys) == 2 and fault.keys[0] == fault.keys[1]
        assert [
            p.program_id for p in runtime.programs(refresh=True, limit=None) if p.name == name
        ] == [program_id]
    finally:
        runtime.delete_program(program_id)


def test_lost_worker_is_replaced_exactly_once(
    backend: Any, runtime: Any, task_run_in_api: Any
) -> None:
    """A job whose worker died is retryable: the retry submits one replacement, not more."""
    program_id = runtime.upload_program(
        SELF_KILLING_PROGRAM,
        {"name": "prefect-self-killing", "description": "dies once", "max_execution_time": 60},
    )
    try:

        @flow
        def survive(port: int) -> tuple[Any, Any]:
            state = run_and_await.with_options(retries=3, retry_delay_seconds=0)(
                backend, program_id, {"oracle_port": port}, return_state=True
            )
            return state.result(), state.state_details.task_run_id

        with first_caller_dies() as port:
            result, task_run_id = survive(port)
        assert result == "survived"
        assert task_run_in_api(task_run_id).run_count == 2
        jobs = runtime.jobs(limit=None, program_id=program_id)
        states = sorted(
            (j.state.value, j.reason_code.value if j.reason_code else None) for j in jobs
        )
        assert states == [("COMPLETED", None), ("FAILED", "WORKER_LOST")]
    finally:
        runtime.delete_program(program_id)
