"""A hybrid loop on one serving ``estimator`` job: ``estimator_cost(..., session=True)``.

The same loop as with a job per evaluation, on one job answering every evaluation over its
channel, and a serving job lost mid-loop replaced within the evaluation that found it gone.
"""

# Prefect types flows returning Any as possibly coroutines or states.
# mypy: disable-error-code="arg-type,attr-defined"

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import TaskRunSort
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp

from prefect_qiskit_runtime.prefect.loops import (
    LoopResult,
    SessionEstimatorCost,
    estimator_cost,
    minimize,
)

OPTIONS = {"maxiter": 15, "rhobeg": 0.5}
X0 = [0.1, 0.2]
HAMILTONIAN = SparsePauliOp.from_list([("ZZ", 1.0), ("XI", 0.5), ("IX", 0.5), ("ZI", 0.2)])


def ansatz() -> QuantumCircuit:
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(2)
    qc.ry(a, 0)
    qc.ry(b, 1)
    qc.cx(0, 1)
    return qc


def _flow_run_id() -> Any:
    from prefect.runtime import flow_run

    return flow_run.id


def _iteration_names(flow_run_id: Any) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    return [r.name for r in runs if r.name.startswith("iteration-")]


def _job_count(runtime: Any) -> int:
    return len(runtime.jobs(limit=None))


def assert_same_loop(result: LoopResult, reference: LoopResult) -> None:
    assert result.nfev == reference.nfev
    assert result.fun == pytest.approx(reference.fun, abs=1e-8)
    np.testing.assert_allclose(result.x, reference.x, rtol=0, atol=1e-8)


@pytest.fixture(scope="module")
def reference(backend: Any, prefect_server: str) -> LoopResult:
    """The loop with a job per evaluation."""
    cost = estimator_cost(backend, ansatz(), HAMILTONIAN)

    @flow
    def plain_loop() -> LoopResult:
        return minimize(cost, X0, options=OPTIONS, name="plain")

    result = plain_loop()
    assert result.evaluated == result.nfev == cost.jobs > 3
    return result


def test_one_serving_job_answers_the_whole_loop(
    backend: Any, runtime: Any, reference: LoopResult, poll: Any
) -> None:
    cost = estimator_cost(backend, ansatz(), HAMILTONIAN, session=True, idle_timeout=60)
    assert isinstance(cost, SessionEstimatorCost)
    before = _job_count(runtime)

    @flow
    def session_loop() -> tuple[LoopResult, Any, str]:
        with cost as energy:
            result = minimize(energy, X0, options=OPTIONS, name="session")
            assert energy.job is not None
            status = energy.job.status().name  # still serving inside the with block
        return result, _flow_run_id(), status

    result, run_id, inside = session_loop()
    assert inside == "RUNNING"
    assert_same_loop(result, reference)
    assert cost.jobs == 1 and _job_count(runtime) - before == 1
    assert cost.calls == result.evaluated == result.nfev
    assert cost.job is not None
    # Closing the cost ended the channel: the job completes with every evaluation answered.
    done = cost.job.result(timeout=120)
    assert done == {"calls": result.evaluated, "failed": 0, "circuits_prepared": 1}
    assert cost.job.status().name == "DONE"
    # Each evaluation is still its own task run.
    expected = [f"iteration-{k}" for k in range(result.nfev)]
    poll(lambda: _iteration_names(run_id) == expected, what="the loop's iteration task runs")


def test_a_serving_job_cancelled_mid_loop_is_replaced(
    backend: Any, runtime: Any, reference: LoopResult
) -> None:
    session = estimator_cost(backend, ansatz(), HAMILTONIAN, session=True, idle_timeout=60)
    assert isinstance(session, SessionEstimatorCost)
    cancelled: list[Any] = []

    def cost(params: np.ndarray) -> float:
        if not cancelled and session.calls == 4:
            # Between evaluations: the serving job goes away under the open channel.
            job = session.job
            assert job is not None
            job.cancel()
            job.wait_for_final_state(timeout=120)
            cancelled.append(job)
        return session(params)

    before = _job_count(runtime)

    @flow
    def loop() -> LoopResult:
        with session:
            return minimize(cost, X0, options=OPTIONS, name="session-cancelled")

    result = loop()
    assert_same_loop(result, reference)
    assert len(cancelled) == 1 and cancelled[0].status().name == "CANCELLED"
    assert session.jobs == 2 and _job_count(runtime) - before == 2
    assert session.job is not None and session.job.job_id() != cancelled[0].job_id()
    assert session.calls == result.evaluated == result.nfev
    done = session.job.result(timeout=120)
    assert done == {"calls": result.evaluated - 4, "failed": 0, "circuits_prepared": 1}


def test_a_serving_job_that_idled_out_is_replaced(
    backend: Any, runtime: Any, reference: LoopResult
) -> None:
    """The job finishes on its idle timeout between two evaluations; the next one starts anew."""
    session = estimator_cost(backend, ansatz(), HAMILTONIAN, session=True, idle_timeout=2)
    assert isinstance(session, SessionEstimatorCost)
    idled: list[Any] = []

    def cost(params: np.ndarray) -> float:
        if not idled and session.calls == 3:
            job = session.job
            assert job is not None
            job.wait_for_final_state(timeout=120)  # no call for 2 s: it completes by itself
            idled.append(job)
        return session(params)

    before = {job.job_id() for job in runtime.jobs(limit=None)}

    @flow
    def loop() -> LoopResult:
        with session:
            return minimize(cost, X0, options=OPTIONS, name="session-idled")

    result = loop()
    assert_same_loop(result, reference)
    assert idled[0].result(timeout=120) == {"calls": 3, "failed": 0, "circuits_prepared": 1}
    # Later evaluations come faster than 2 s apart, but a slow machine may idle out again: every
    # evaluation was answered exactly once, by one of the loop's jobs.
    new = [job for job in runtime.jobs(limit=None) if job.job_id() not in before]
    assert len(new) == session.jobs >= 2
    answered = sum(job.result(timeout=120)["calls"] for job in new)
    assert answered == session.calls == result.evaluated == result.nfev
