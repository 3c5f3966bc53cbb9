"""RuntimeService and RuntimeJob job methods against the real service: the seed workflow, results,
failures, cancel, delete, logs, metrics, pagination and the error paths."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from pathlib import Path

import numpy as np
import pytest
from client_support import BACKEND, DOUBLER, FAILER, WAITER, Uploader, started_callback, unique
from qiskit import QuantumCircuit
from qiskit.providers import JobStatus
from service_helpers import RunningService

from prefect_qiskit_runtime.client import RuntimeJob, RuntimeService
from prefect_qiskit_runtime.core.exceptions import (
    IBMQInputValueError,
    QiskitRuntimeError,
    RuntimeAuthenticationError,
    RuntimeInvalidStateError,
    RuntimeJobCancelled,
    RuntimeJobFailureError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    RuntimeProgramNotFound,
)
from prefect_qiskit_runtime.core.models import JobState, ReasonCode


def test_seed_documentation_workflow(
    alice: RuntimeService, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect_qiskit_runtime.core.codec import RunnerResult

    # List all available programs.
    alice.pprint_programs()
    assert "circuit-runner:" in capsys.readouterr().out
    # Create a circuit.
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    # Execute the circuit using the "circuit-runner" program.
    program_inputs = {"circuits": qc, "measurement_error_mitigation": True, "shots": 200}
    options = {"backend_name": "ibmq_qasm_simulator"}
    job = alice.run(program_id="circuit-runner", options=options, inputs=program_inputs)
    # Get runtime job result.
    result = job.result(decoder=RunnerResult)
    counts = result.get_counts()
    assert sum(counts.values()) == 200
    assert set(counts) <= {"00", "11"}
    quasi = result.get_quasiprobabilities()
    assert sum(quasi.values()) == pytest.approx(1.0, abs=0.05)


def test_run_result_status_retrieval_and_metrics(alice: RuntimeService, doubler: str) -> None:
    inputs = {"x": 21, "c": complex(1, -2), "arr": np.arange(3), "tags": {"a"}}
    job = alice.run(doubler, BACKEND, inputs)
    assert isinstance(job, RuntimeJob)
    assert job.result() == 42
    assert job.result() == 42  # a second call works (cached text, decoded again)
    assert job.status() == JobStatus.DONE
    assert job.state == JobState.COMPLETED
    assert job.error_message() is None
    assert (job.program_id, job.backend(), job.inputs["x"]) == (doubler, "aer_simulator", 21)
    created = job.creation_date
    assert created is not None and created.tzinfo == timezone.utc

    fetched = alice.job(job.job_id())
    assert (fetched.job_id(), fetched.program_id, fetched.backend()) == (
        job.job_id(),
        doubler,
        "aer_simulator",
    )
    assert fetched.inputs["x"] == 21
    assert fetched.inputs["c"] == complex(1, -2)
    assert np.array_equal(fetched.inputs["arr"], np.arange(3))
    assert fetched.inputs["tags"] == {"a"}
    assert fetched.creation_date == created
    assert fetched.result() == 42
    assert job.job_id() in [j.job_id() for j in alice.jobs(limit=5)]

    metrics = job.metrics()
    assert metrics["status"] == "COMPLETED"
    assert metrics["created"] <= metrics["started"] <= metrics["finished"]
    assert metrics["queue_seconds"] >= 0 and metrics["run_seconds"] >= 0
    assert metrics["total_seconds"] == pytest.approx(
        metrics["queue_seconds"] + metrics["run_seconds"], abs=1e-3
    )


def test_result_is_one_long_polled_request(
    alice: RuntimeService, waiter: str, gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``result()`` long-polls the results themselves: one request from a running job to its value,
    and the metrics fetched afterwards still show the job's end."""
    started, callback = started_callback()
    job = alice.run(waiter, BACKEND, {"gate": str(gate)}, callback=callback)
    assert started.wait(60)
    seen = alice.job(job.job_id())  # holds a RUNNING job object
    assert seen.state == JobState.RUNNING
    transport = seen._transport
    calls: list[tuple[str, str]] = []
    forward = transport.request

    def spy(method: str, path: str, **kwargs: object) -> object:
        calls.append((method, path))
        return forward(method, path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(transport, "request", spy)
    gate.touch()
    assert seen.result(timeout=60) == "released"
    assert calls == [("GET", f"/jobs/{job.job_id()}/results")]
    assert seen.state == JobState.COMPLETED and not seen.retryable
    metrics = seen.metrics()
    assert metrics["status"] == "COMPLETED" and metrics["finished"] is not None
    monkeypatch.undo()
    assert job.result(timeout=60) == "released"


def test_same_idempotency_key_returns_the_same_job(alice: RuntimeService, upload: Uploader) -> None:
    program_id = upload(DOUBLER, "idem-run")
    key = unique("run-key")
    first = alice.run(program_id, BACKEND, {"x": 1}, idempotency_key=key)
    again = alice.run(program_id, BACKEND, {"x": 1}, idempotency_key=key)
    assert first.job_id() == again.job_id()
    assert [j.job_id() for j in alice.jobs(limit=None, program_id=program_id)] == [first.job_id()]
    assert again.result() == 2


def test_failed_job_raises_with_traceback_and_logs(alice: RuntimeService, upload: Uploader) -> None:
    job = alice.run(upload(FAILER, "failer"), BACKEND, {})
    with pytest.raises(RuntimeJobFailureError) as failure:
        job.result()
    assert "KeyError" in str(failure.value)
    assert "no_such_input" in str(failure.value)
    assert str(failure.value).startswith("Unable to retrieve job result. ")
    assert failure.value.retryable is False
    assert job.status() == JobStatus.ERROR
    assert job.reason_code in (ReasonCode.PROGRAM_ERROR, None)
    message = job.error_message()
    assert message is not None
    assert message.startswith(f"Job {job.job_id()} has failed:\n")
    assert "KeyError" in message
    assert "about to fail" in job.logs()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """A file a WAITER job waits for; created on teardown so no job is left running."""
    path = tmp_path / "gate"
    yield path
    path.touch()


def test_timeout_cancel_and_cancelled_result(
    alice: RuntimeService, waiter: str, gate: Path
) -> None:
    started, callback = started_callback()
    job = alice.run(waiter, BACKEND, {"gate": str(gate)}, callback=callback)
    assert started.wait(60)
    assert job.status() == JobStatus.RUNNING
    with pytest.raises(RuntimeJobTimeoutError):
        job.wait_for_final_state(timeout=0.5)
    with pytest.raises(RuntimeJobTimeoutError):
        job.result(timeout=0.5)
    assert alice.job(job.job_id()).status() == JobStatus.RUNNING
    assert job.job_id() in [j.job_id() for j in alice.jobs(limit=None, pending=True)]
    job.cancel()
    assert job.status() == JobStatus.CANCELLED
    with pytest.raises(RuntimeJobCancelled):
        job.result()
    server_side = alice.job(job.job_id())
    server_side.wait_for_final_state(timeout=30)
    assert server_side.status() == JobStatus.CANCELLED
    job.cancel()  # cancelling a cancelled job is not an error (a retried cancel must succeed)


def test_wait_then_release(alice: RuntimeService, waiter: str, gate: Path) -> None:
    started, callback = started_callback()
    job = alice.run(waiter, BACKEND, {"gate": str(gate)}, callback=callback)
    assert started.wait(60)
    gate.touch()
    assert job.result(timeout=60) == "released"
    assert job.interim_results() == ["started"]


def test_job_that_runs_too_long_is_an_error(alice: RuntimeService, upload: Uploader) -> None:
    sleeper = "import time\n\ndef main(backend, user_messenger, **kwargs):\n    time.sleep(60)\n"
    job = alice.run(upload(sleeper, "sleeper", max_execution_time=1), BACKEND, {})
    with pytest.raises(RuntimeJobFailureError, match="ran longer than maximum execution time"):
        job.result(timeout=60)
    assert job.state == JobState.CANCELLED_RAN_TOO_LONG
    assert job.status() == JobStatus.ERROR


def test_cancel_finished_job_is_invalid_state(alice: RuntimeService, doubler: str) -> None:
    job = alice.run(doubler, BACKEND, {"x": 1})
    job.wait_for_final_state()
    with pytest.raises(RuntimeInvalidStateError) as invalid:
        job.cancel()
    assert invalid.value.status_code == 409
    assert job.status() == JobStatus.DONE


def test_delete_job(alice: RuntimeService, doubler: str) -> None:
    job = alice.run(doubler, BACKEND, {"x": 3})
    assert job.result() == 6
    alice.delete_job(job.job_id())
    with pytest.raises(RuntimeJobNotFound) as missing:
        alice.job(job.job_id())
    assert missing.value.status_code == 404
    with pytest.raises(RuntimeJobNotFound):
        alice.delete_job(job.job_id())
    assert job.logs() == ""


def test_logs_and_log_level(alice: RuntimeService, upload: Uploader) -> None:
    source = """
import logging
import warnings

def main(backend, user_messenger, **kwargs):
    print("printed line")
    warnings.warn("warned line")
    logging.getLogger("prog").info("info line")
    return "ok"
"""
    program_id = upload(source, "logger")
    quiet = alice.run(program_id, BACKEND, {})
    verbose = alice.run(program_id, {**BACKEND, "log_level": "INFO"}, {})
    assert quiet.result() == "ok" and verbose.result() == "ok"
    logs = quiet.logs()
    assert "printed line" in logs and "warned line" in logs
    assert "info line" not in logs
    assert "info line" in verbose.logs()


def test_run_error_paths(
    alice: RuntimeService, service: RunningService, doubler: str, upload: Uploader
) -> None:
    with pytest.raises(RuntimeProgramNotFound) as missing:
        alice.run("no-such-program", BACKEND, {})
    assert missing.value.status_code == 404
    with pytest.raises(IBMQInputValueError, match="backend_name"):
        alice.run(doubler, {}, {"x": 1})
    with pytest.raises(IBMQInputValueError) as bad_backend:
        alice.run(doubler, {"backend_name": "no_such_backend"}, {"x": 1})
    assert bad_backend.value.status_code == 400
    typed = upload(
        DOUBLER,
        "typed",
        parameters={"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    )
    with pytest.raises(IBMQInputValueError) as invalid:
        alice.run(typed, BACKEND, {"y": 1})
    assert invalid.value.status_code == 400
    with pytest.raises(RuntimeJobNotFound):
        alice.job("no-such-job")


def test_bad_token_never_leaks(service: RunningService) -> None:
    secret = "not-a-token-" + unique("s")
    client = RuntimeService(service.url + "/runtime/", secret)
    with pytest.raises(RuntimeAuthenticationError) as denied:
        client.programs()
    assert denied.value.status_code == 401
    assert secret not in str(denied.value) and secret not in repr(denied.value)
    assert secret not in repr(client) and secret not in repr(client.transport)
    with pytest.raises(QiskitRuntimeError):
        client.job("anything")


def test_url_forms_logout_and_backends(service: RunningService, doubler: str) -> None:
    token = service.add_user("alice")
    for url in (service.url, service.url + "/api", service.url + "/runtime/"):
        assert RuntimeService(url, token).url == service.url
    client = RuntimeService(service.url + "/api", token)
    client.logout()
    assert client.run(doubler, BACKEND, {"x": 4}).result() == 8
    names = {b["backend_name"] for b in client.backends()}
    assert {"aer_simulator", "basic_simulator", "ibmq_qasm_simulator"} <= names


def test_job_pagination_and_filters(service: RunningService) -> None:
    """25 finished jobs and one pending, for a user of their own so that the counts are exact."""
    client = RuntimeService(service.url, service.add_user("client-pager", can_upload=True))
    doubler = client.upload_program(
        DOUBLER, name=unique("pager"), description="d", max_execution_time=60
    )
    submitted = [client.run(doubler, BACKEND, {"x": i}) for i in range(25)]
    assert [j.result() for j in submitted] == [2 * i for i in range(25)]
    newest_first = [j.job_id() for j in reversed(submitted)]

    waiter = client.upload_program(
        WAITER, name=unique("pager-wait"), description="d", max_execution_time=60
    )
    gate = service.home / f"gate-{unique('pager')}"
    pending = client.run(waiter, BACKEND, {"gate": str(gate)})
    try:
        ids = [j.job_id() for j in client.jobs(limit=None)]
        assert ids == [pending.job_id(), *newest_first]
        assert len(client.jobs()) == 10
        assert len(client.jobs(limit=21)) == 21
        assert len(client.jobs(limit=30)) == 26
        done = [j.job_id() for j in client.jobs(limit=None, program_id=doubler)]
        assert done == newest_first
        assert [j.job_id() for j in client.jobs(limit=2, skip=4, program_id=doubler)] == (
            newest_first[4:6]
        )
        assert [j.job_id() for j in client.jobs(skip=24, program_id=doubler)] == newest_first[24:]
        assert client.jobs(skip=50) == []
        assert client.jobs(skip=50, limit=None) == []
        assert [j.job_id() for j in client.jobs(limit=None, pending=True)] == [pending.job_id()]
        finals = client.jobs(limit=None, pending=False)
        assert [j.job_id() for j in finals] == newest_first
        assert len(client.jobs(limit=6, skip=2, pending=False)) == 6
        assert all(j.status() == JobStatus.DONE for j in finals[:3])
    finally:
        gate.touch()
    assert pending.result(timeout=60) == "released"
