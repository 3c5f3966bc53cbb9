"""IBM Quantum Platform as a backend: primitive tasks through qiskit-ibm-runtime, in-process.

The endpoint is the session's real service (its modern API, uvicorn on 127.0.0.1), reached
exactly as IBM Quantum Platform would be: IAM, Global Search/Catalog and ``/api/v1``. The only
mock injects the fault of the exactly-once test (a status poll whose answer is lost).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterTaskRunId

from prefect_qiskit_runtime.core.exceptions import MissingExtraError, RuntimeJobTimeoutError
from prefect_qiskit_runtime.prefect.blocks import (
    QiskitRuntimeBackend,
    QiskitRuntimePlatformCredentials,
)
from prefect_qiskit_runtime.prefect.tasks import (
    JOB_METRICS_ARTIFACT_KEY,
    arun_sampler,
    run_estimator,
    run_sampler,
)

pytest.importorskip("qiskit_ibm_runtime")
# qiskit-ibm-runtime 0.50 deprecated SamplerV2/EstimatorV2 (the docs say so); keep the log quiet.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="qiskit_ibm_runtime")


@pytest.fixture(scope="session")
def platform(service: Any) -> QiskitRuntimePlatformCredentials:
    """Platform credentials of user ``ivy`` on the session's service."""
    return QiskitRuntimePlatformCredentials(token=service.add_user("ivy"), url=service.url)


@pytest.fixture(scope="session")
def ibm_backend(platform: QiskitRuntimePlatformCredentials) -> QiskitRuntimeBackend:
    """``aer_simulator`` through qiskit-ibm-runtime, seeded, retrying without delay."""
    return QiskitRuntimeBackend(
        credentials=platform,
        backend_name="aer_simulator",
        options={"simulator": {"seed_simulator": 1234}},
        retry_delay_seconds=0,
    )


@pytest.fixture(scope="session")
def ibm_service(platform: QiskitRuntimePlatformCredentials) -> Any:
    """A QiskitRuntimeService of the test's own, for checking what the endpoint holds."""
    return QiskitRuntimePlatformCredentials(token=platform.token, url=platform.url).get_client()


def bell(measure: bool = True) -> Any:
    from qiskit import QuantumCircuit

    circuit = QuantumCircuit(2)
    circuit.h(0)
    circuit.cx(0, 1)
    if measure:
        circuit.measure_all()
    return circuit


def slow_isa_pub(service: Any, points: int = 4000) -> tuple[Any, Any]:
    """A PUB that keeps ``fake_5q_device`` busy for minutes (a parameter sweep), transpiled."""
    import numpy as np
    from qiskit.circuit.library import efficient_su2
    from qiskit.transpiler import generate_preset_pass_manager

    circuit = efficient_su2(5, reps=4)
    circuit.measure_all()
    device = service.backend("fake_5q_device")
    isa = generate_preset_pass_manager(backend=device, optimization_level=1).run(circuit)
    return isa, np.random.default_rng(7).random((points, circuit.num_parameters))


def tagged_jobs(ibm_service: Any, task_run_id: Any) -> list[Any]:
    return list(ibm_service.jobs(job_tags=[f"prefect-task-run-{task_run_id}"], limit=None))


def artifacts_of(task_run_id: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return list(
            client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    task_run_id=ArtifactFilterTaskRunId(any_=[task_run_id])
                )
            )
        )


def failure_of(state: Any) -> tuple[type[BaseException] | None, str]:
    try:
        state.result()
    except BaseException as exc:
        return type(exc), str(exc)
    return None, ""


def test_sampler_and_estimator_in_a_flow(
    ibm_backend: QiskitRuntimeBackend, ibm_service: Any, task_run_in_api: Callable[..., Any]
) -> None:
    from qiskit.quantum_info import SparsePauliOp

    @flow
    def bell_flow() -> tuple[Any, Any, Any, Any]:
        sampled = run_sampler(ibm_backend, [bell()], shots=1000, return_state=True)
        estimated = run_estimator(
            ibm_backend, [(bell(measure=False), SparsePauliOp("ZZ"))], return_state=True
        )
        return (
            sampled.result(),
            estimated.result(),
            sampled.state_details.task_run_id,
            estimated.state_details.task_run_id,
        )

    sampled, estimated, sampler_run, estimator_run = bell_flow()
    counts = sampled[0].data.meas.get_counts()
    assert set(counts) == {"00", "11"} and sum(counts.values()) == 1000
    assert abs(float(estimated[0].data.evs) - 1.0) < 1e-6

    for run_id, primitive in ((sampler_run, "sampler"), (estimator_run, "estimator")):
        (job,) = tagged_jobs(ibm_service, run_id)  # one job per task run, found by its tag
        assert job.primitive_id == primitive and job.status() == "DONE"
        assert task_run_in_api(run_id).state.is_completed()
        made = artifacts_of(run_id)
        records = [a for a in made if f"Primitive job `{job.job_id()}`" in (a.description or "")]
        tables = [a for a in records if a.key == JOB_METRICS_ARTIFACT_KEY]
        assert len(tables) == 1, made
        (row,) = table_rows(tables[0])
        assert row["job_id"] == job.job_id() and row["status"] == "DONE"
        assert row["usage_seconds"] is not None and row["url"].endswith(f"/jobs/{job.job_id()}")
        links = [a for a in records if a.type == "markdown"]
        assert len(links) == 1 and f"/api/v1/jobs/{job.job_id()}" in str(links[0].data)


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    """A table artifact's rows (the API stores them as JSON text)."""
    import json

    data = artifact.data
    return json.loads(data) if isinstance(data, str) else list(data)


def test_retry_reattaches_to_the_recorded_job(
    ibm_backend: QiskitRuntimeBackend,
    ibm_service: Any,
    monkeypatch: pytest.MonkeyPatch,
    task_run_in_api: Callable[..., Any],
) -> None:
    """A first attempt that loses a status answer after recording its job: the retry re-attaches."""
    from qiskit_ibm_runtime import RuntimeJobV2
    from qiskit_ibm_runtime.api.exceptions import RequestsApiError

    real_status = RuntimeJobV2.status
    faults: list[str] = []
    recorded_before_fault: list[bool] = []

    def status_losing_first_answer(job: Any) -> Any:
        if not faults:
            faults.append(job.job_id())
            # The record is written before the first poll: find it as a retry would.
            recorded_before_fault.append(bool(_record_in_api(job.job_id())))
            raise RequestsApiError("injected: the status answer was lost", status_code=503)
        return real_status(job)

    monkeypatch.setattr(RuntimeJobV2, "status", status_losing_first_answer)
    jobs_before = len(ibm_service.jobs(limit=None))

    @flow
    def retried() -> tuple[Any, Any]:
        state = run_sampler.with_options(retries=2, retry_delay_seconds=0)(
            ibm_backend, [bell()], shots=500, return_state=True
        )
        return state.result(), state.state_details.task_run_id

    result, task_run_id = retried()
    assert sum(result[0].data.meas.get_counts().values()) == 500
    assert recorded_before_fault == [True]
    assert task_run_in_api(task_run_id).run_count == 2  # it did retry
    (job,) = tagged_jobs(ibm_service, task_run_id)
    assert job.job_id() == faults[0]  # the retry waited for the first attempt's job
    assert len(ibm_service.jobs(limit=None)) == jobs_before + 1  # and made no other


def test_a_resent_submission_leaves_one_job(
    ibm_backend: QiskitRuntimeBackend, ibm_service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submission the client sent twice (its first answer a retryable 5xx after the endpoint
    acted) made two jobs: the task keeps the one it was answered with and cancels the other."""
    from prefect_qiskit_runtime.prefect.tasks import primitives

    real_submit = primitives._submit
    made: list[Any] = []

    def submit_twice(*args: Any, **kwargs: Any) -> Any:
        # The job of the answer the client never saw: slow, so it is still running when the
        # task looks for duplicates.
        unseen = list(args)
        unseen[3] = [slow_isa_pub(ibm_service)]
        made.append(real_submit(*unseen, **kwargs))
        made.append(real_submit(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(primitives, "_submit", submit_twice)

    @flow
    def resent() -> tuple[Any, Any]:
        state = run_sampler(ibm_backend, [bell()], shots=300, return_state=True)
        return state.result(), state.state_details.task_run_id

    result, task_run_id = resent()
    assert sum(result[0].data.meas.get_counts().values()) == 300
    first, kept = (job.job_id() for job in made)
    assert {job.job_id() for job in tagged_jobs(ibm_service, task_run_id)} == {first, kept}
    assert ibm_service.job(kept).status() == "DONE"
    assert ibm_service.job(first).status() == "CANCELLED"


def test_retry_finds_an_unrecorded_job_by_its_tag(
    ibm_backend: QiskitRuntimeBackend,
    ibm_service: Any,
    monkeypatch: pytest.MonkeyPatch,
    task_run_in_api: Callable[..., Any],
) -> None:
    """A first attempt that dies between the submission and the record: the tag finds the job."""
    from prefect_qiskit_runtime.core.exceptions import RuntimeServiceUnavailable
    from prefect_qiskit_runtime.prefect.tasks import _platform

    real_record = _platform.record_job
    submitted: list[str] = []
    records_at_fault: list[int] = []

    def dies_before_recording(job: Any, primitive: str, url: str) -> None:
        if not submitted:
            submitted.append(job.job_id())
            records_at_fault.append(len(_record_in_api(job.job_id())))
            raise RuntimeServiceUnavailable("injected: lost before the record", retryable=True)
        real_record(job, primitive, url)

    monkeypatch.setattr(_platform, "record_job", dies_before_recording)
    jobs_before = len(ibm_service.jobs(limit=None))

    @flow
    def retried() -> tuple[Any, Any]:
        state = run_sampler.with_options(retries=1, retry_delay_seconds=0)(
            ibm_backend, [bell()], shots=300, return_state=True
        )
        return state.result(), state.state_details.task_run_id

    result, task_run_id = retried()
    assert sum(result[0].data.meas.get_counts().values()) == 300
    assert task_run_in_api(task_run_id).run_count == 2
    # Not recorded when the first attempt died: the retry found it by its tag, then recorded it.
    assert records_at_fault == [0]
    assert len(_record_in_api(submitted[0])) == 1
    (job,) = tagged_jobs(ibm_service, task_run_id)
    assert job.job_id() == submitted[0]
    assert len(ibm_service.jobs(limit=None)) == jobs_before + 1


def _record_in_api(job_id: str) -> list[Any]:
    from prefect.client.schemas.filters import ArtifactFilterType

    with get_client(sync_client=True) as client:
        made = client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["markdown"]))
        )
    return [a for a in made if f"Primitive job `{job_id}`" in (a.description or "")]


def test_task_timeout_cancels_the_job_and_closes_its_session(
    ibm_backend: QiskitRuntimeBackend, ibm_service: Any
) -> None:
    device = ibm_backend.model_copy(update={"backend_name": "fake_5q_device"})
    pub = slow_isa_pub(ibm_service)

    @flow
    def times_out() -> tuple[Any, Any]:
        state = run_sampler.with_options(timeout_seconds=3, retries=0)(
            device, [pub], mode="session", return_state=True
        )
        return failure_of(state), state.state_details.task_run_id

    started = time.monotonic()
    (failed, message), task_run_id = times_out()
    assert failed is not None and issubclass(failed, TimeoutError), message
    assert time.monotonic() - started < 60  # not the minutes the job would take
    (job,) = tagged_jobs(ibm_service, task_run_id)
    assert job.status() == "CANCELLED"
    assert job.session_id
    details = job._api_client.session_details(job.session_id)
    assert details["state"] == "closed" and details["accepting_jobs"] is False


@pytest.mark.parametrize("limit", ["task timeout_seconds", "timeout argument"])
def test_async_timeout_cancels_the_job_and_closes_its_batch(
    ibm_backend: QiskitRuntimeBackend, ibm_service: Any, limit: str
) -> None:
    """Prefect's timeout cancels the awaiting coroutine (the job is cancelled from the event loop's
    side); the task's own ``timeout=`` raises in its worker thread."""
    device = ibm_backend.model_copy(update={"backend_name": "fake_5q_device"})
    pub = slow_isa_pub(ibm_service)
    by_prefect = limit == "task timeout_seconds"
    task_options: dict[str, Any] = {"retries": 0, "timeout_seconds": 3 if by_prefect else None}
    timeout = None if by_prefect else 2.0

    @flow
    async def waits_too_long() -> tuple[Any, Any]:
        state = await arun_sampler.with_options(**task_options)(
            device, [pub], mode="batch", timeout=timeout, return_state=True
        )
        try:
            await state.aresult()
        except BaseException as exc:
            return (type(exc), str(exc)), state.state_details.task_run_id
        return (None, ""), state.state_details.task_run_id

    (failed, message), task_run_id = asyncio.run(waits_too_long())
    assert failed is not None and issubclass(failed, TimeoutError), message
    assert (failed is RuntimeJobTimeoutError) is not by_prefect
    (job,) = tagged_jobs(ibm_service, task_run_id)
    assert job.status() == "CANCELLED"
    details = job._api_client.session_details(job.session_id)
    assert details["mode"] == "batch" and details["state"] == "closed"


def test_flow_run_cancellation_cancels_the_job_and_closes_its_session(
    ibm_backend: QiskitRuntimeBackend, ibm_service: Any, poll: Callable[..., Any]
) -> None:
    """A flow run set to Cancelling (as ``prefect flow-run cancel`` does) while its task waits."""
    import threading
    import uuid

    from prefect.states import Cancelling

    device = ibm_backend.model_copy(update={"backend_name": "fake_5q_device"})
    pub = slow_isa_pub(ibm_service)
    marker = f"cancel-me-{uuid.uuid4().hex[:8]}"
    outcome: list[Any] = []

    @flow
    def cancelled_from_outside() -> None:
        state = run_sampler.with_options(retries=0)(
            device,
            [pub],
            mode="session",
            options={"environment": {"job_tags": [marker]}},
            return_state=True,
        )
        outcome.append(failure_of(state))

    runner = threading.Thread(target=lambda: cancelled_from_outside(return_state=True))
    started = time.monotonic()
    runner.start()
    try:
        jobs = poll(lambda: ibm_service.jobs(job_tags=[marker]), 120, "the job to be submitted")
        (tag,) = [t for t in jobs[0].tags if t.startswith("prefect-task-run-")]
        with get_client(sync_client=True) as client:
            task_run = client.read_task_run(uuid.UUID(tag.removeprefix("prefect-task-run-")))
            client.set_flow_run_state(task_run.flow_run_id, Cancelling(), force=True)
    finally:
        runner.join(timeout=120)
    assert not runner.is_alive()
    assert time.monotonic() - started < 90  # the job alone would take minutes
    ((failed, message),) = outcome
    assert failed is not None and "flow run was cancelled" in message, message
    job = ibm_service.job(jobs[0].job_id())
    assert job.status() == "CANCELLED"
    assert job._api_client.session_details(job.session_id)["state"] == "closed"


def test_block_max_execution_time_ends_the_job_on_the_endpoint(
    ibm_backend: QiskitRuntimeBackend, ibm_service: Any
) -> None:
    """The block's ``max_execution_time`` travels as the primitive's option; the service ends the
    job, and the task fails at once without a retry."""
    from prefect_qiskit_runtime.core.exceptions import RuntimeJobFailureError

    limited = ibm_backend.model_copy(
        update={"backend_name": "fake_5q_device", "max_execution_time": 2}
    )
    pub = slow_isa_pub(ibm_service)

    @flow
    def too_long() -> tuple[Any, Any]:
        state = run_sampler.with_options(retries=2, retry_delay_seconds=0)(
            limited, [pub], return_state=True
        )
        return failure_of(state), state.state_details.task_run_id

    (failed, message), task_run_id = too_long()
    assert failed is RuntimeJobFailureError and "maximum execution time" in message, message
    (job,) = tagged_jobs(ibm_service, task_run_id)  # not retried: one job
    assert job.status() == "ERROR"


def test_block_round_trip_makes_no_network_call(platform: QiskitRuntimePlatformCredentials) -> None:
    # Port 9 (discard) on a TEST-NET address: any connection attempt would hang or fail.
    offline = QiskitRuntimePlatformCredentials(token="t", url="http://192.0.2.1:9", instance="x")
    QiskitRuntimeBackend(credentials=offline, backend_name="ibm_x").save(
        "platform-offline", overwrite=True
    )
    loaded = QiskitRuntimeBackend.load("platform-offline")
    assert isinstance(loaded.credentials, QiskitRuntimePlatformCredentials)
    assert loaded.credentials.url == "http://192.0.2.1:9"
    assert loaded.credentials.token.get_secret_value() == "t"
    with pytest.raises(TypeError, match="run_sampler"):
        loaded.get_client()  # the old-API tasks refuse a platform block at once


def test_missing_extra_names_it(
    platform: QiskitRuntimePlatformCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "qiskit_ibm_runtime", None)  # "not installed"
    fresh = QiskitRuntimePlatformCredentials(token="other", url=platform.url)
    with pytest.raises(MissingExtraError, match=r"prefect-qiskit-runtime\[ibm\]"):
        fresh.get_client()


def test_client_build_leaves_the_environment_alone(
    platform: QiskitRuntimePlatformCredentials,
) -> None:
    names = ("IAM_URL", "GLOBAL_SEARCH_URL", "GLOBAL_CATALOG_URL")
    before = {name: os.environ.get(name) for name in names}
    service = QiskitRuntimePlatformCredentials(token=platform.token, url=platform.url).get_client()
    assert service.instances()[0]["name"] == "local"  # it reached our IAM and Global Search
    assert {name: os.environ.get(name) for name in names} == before


def test_self_signed_endpoint(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS with the service's own certificate: trusted through REQUESTS_CA_BUNDLE only."""
    from service_helpers import start_service, stop_service

    home = tmp_path_factory.mktemp("tls-home")
    tls = start_service(home, "--tls-self-signed")
    try:
        token = tls.add_user("tess")
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        # The client reports the failed TLS handshake with Global Search as no instances found.
        with pytest.raises(Exception, match="Unable to retrieve instances"):
            QiskitRuntimePlatformCredentials(token=token, url=tls.url).get_client()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(home / "tls" / "cert.pem"))
        trusted = QiskitRuntimePlatformCredentials(token=token, url=tls.url)
        backend = QiskitRuntimeBackend(credentials=trusted, backend_name="aer_simulator")
        # The task's implementation outside a flow: the same client, sessions and token manager.
        result = run_sampler.fn(backend, [bell()], shots=200)
        assert sum(result[0].data.meas.get_counts().values()) == 200
    finally:
        stop_service(tls)
