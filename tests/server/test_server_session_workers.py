"""A dedicated session's jobs run in one worker process kept for the session.

Over raw HTTP against the real service: the jobs' DEBUG logs name the process that ran them (the
runner's ``prefect_qiskit_runtime.worker`` line), so the tests can tell which jobs shared one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from modern_helpers import ModernApi, bell_params
from server_helpers import unique
from service_helpers import RunningService

from prefect_qiskit_runtime.core.codec import RuntimeDecoder

WORKER_LINE = re.compile(r"prefect_qiskit_runtime\.worker: process (\d+), session (\S+), job (\d+)")


@pytest.fixture(scope="module")
def grace(service: RunningService) -> ModernApi:
    return ModernApi(service, service.add_user(unique("grace")))


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie not reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Whether ``predicate`` became true within ``timeout`` seconds (checked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def open_session(api: ModernApi, mode: str = "dedicated") -> str:
    answer = api.call("POST", "/sessions", json={"mode": mode, "backend": "aer_simulator"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def run_bell(api: ModernApi, session_id: str | None, shots: int = 100) -> tuple[str, int]:
    """Run a Bell sampler job (DEBUG log level) to its end: its id and the pid that ran it."""
    body: dict[str, object] = {"params": bell_params(shots), "log_level": "DEBUG"}
    if session_id is not None:
        body["session_id"] = session_id
    answer = api.run(**body)
    assert answer.status_code == 201, answer.text
    job_id = str(answer.json()["id"])
    job = api.wait(job_id)
    assert job["state"]["status"] == "Completed", job
    return job_id, pid_of(api, job_id)


def pid_of(api: ModernApi, job_id: str) -> int:
    logs = api.call("GET", f"/jobs/{job_id}/logs").text
    found = WORKER_LINE.search(logs)
    assert found is not None, logs
    return int(found.group(1))


def counts_of(api: ModernApi, job_id: str) -> dict[str, int]:
    import json

    result = json.loads(api.call("GET", f"/jobs/{job_id}/results").text, cls=RuntimeDecoder)
    counts: dict[str, int] = result[0].data.meas.get_counts()
    return counts


def test_a_sessions_jobs_share_one_process_and_sessions_do_not(grace: ModernApi) -> None:
    first, second = open_session(grace), open_session(grace)
    runs_a = [run_bell(grace, first, shots) for shots in (100, 200, 300)]
    runs_b = [run_bell(grace, second) for _ in range(2)]
    pids_a = {pid for _, pid in runs_a}
    pids_b = {pid for _, pid in runs_b}
    assert len(pids_a) == 1 and len(pids_b) == 1 and pids_a != pids_b
    for (job_id, _), shots in zip(runs_a, (100, 200, 300), strict=True):
        counts = counts_of(grace, job_id)
        assert sum(counts.values()) == shots and set(counts) <= {"00", "11"}
    # Outside a session, and in a batch, every job has a process of its own.
    batch = open_session(grace, "batch")
    others = [run_bell(grace, None)[1], run_bell(grace, None)[1], run_bell(grace, batch)[1]]
    others.append(run_bell(grace, batch)[1])
    assert len(set(others)) == 4 and not set(others) & (pids_a | pids_b)


def slow_estimator_params() -> dict[str, object]:
    """An estimator job that runs for minutes: 200,000 parameter values of an 18-qubit circuit."""
    import json

    import numpy as np
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter
    from qiskit.quantum_info import SparsePauliOp

    from prefect_qiskit_runtime.core.codec import RuntimeEncoder

    theta = Parameter("theta")
    circuit = QuantumCircuit(18)
    for _ in range(8):
        for q in range(18):
            circuit.ry(theta, q)
        for q in range(17):
            circuit.cx(q, q + 1)
    values = np.linspace(0, 1, 200_000).reshape(-1, 1)
    pub = (circuit, SparsePauliOp("Z" * 18), values)
    params = {"pubs": [pub], "options": {}, "version": 2}
    decoded: dict[str, object] = json.loads(json.dumps(params, cls=RuntimeEncoder))
    return decoded


def test_cancelling_a_session_job_kills_its_worker_and_the_next_job_gets_a_new_one(
    grace: ModernApi,
) -> None:
    sid = open_session(grace)
    _, worker = run_bell(grace, sid)
    slow = grace.run("estimator", session_id=sid, params=slow_estimator_params())
    assert slow.status_code == 201, slow.text
    slow_id = slow.json()["id"]
    assert grace.call("GET", f"/jobs/{slow_id}").json()["state"]["status"] == "Running"
    assert grace.call("POST", f"/jobs/{slow_id}/cancel").status_code == 204
    assert grace.wait(slow_id)["state"]["status"] == "Cancelled"
    assert wait_until(lambda: process_gone(worker))
    # The next job may still find the killed worker's slot being freed and run on its own; from
    # then on the session's jobs share the new worker.
    after = [run_bell(grace, sid)[1] for _ in range(4)]
    assert worker not in after
    assert after[-1] == after[-2]


def test_closing_a_session_releases_its_worker(grace: ModernApi) -> None:
    sid = open_session(grace)
    _, worker = run_bell(grace, sid)
    assert run_bell(grace, sid)[1] == worker and not process_gone(worker)
    stop = grace.call("PATCH", f"/sessions/{sid}", json={"accepting_jobs": False})
    assert stop.status_code == 204
    assert wait_until(lambda: process_gone(worker))

    cancelled = open_session(grace)
    _, other = run_bell(grace, cancelled)
    assert grace.call("DELETE", f"/sessions/{cancelled}/close").status_code == 204
    assert wait_until(lambda: process_gone(other))


def test_the_warm_parents_policy_for_session_workers() -> None:
    """Idle timeout, the limit (the longest idle goes first), ended sessions, busy workers."""
    from prefect_qiskit_runtime.server.executors.session_workers import SessionWorkers
    from prefect_qiskit_runtime.server.executors.spares import Proc

    retired: list[int] = []
    workers = SessionWorkers(lambda proc: retired.append(proc.pid))
    workers.configure(2, idle_timeout=60.0)
    a, b, c = (Proc(pid, wfd=pid, sfd=None) for pid in (1, 2, 3))
    for sid, proc in (("sa", a), ("sb", b)):
        assert workers.may_adopt(sid)
        workers.adopt(sid, proc, None)
        proc.job_id = f"job-{sid}"
    assert workers.idle_worker("sa") is None  # busy
    assert not workers.may_adopt("sa") and not workers.may_adopt("sc")  # full, none idle
    workers.job_done(a)
    workers.job_done(b)
    assert workers.idle_worker("sa") is a and workers.next_deadline() is not None
    assert a.idle_since is not None and b.idle_since is not None
    b.idle_since = a.idle_since + 1
    assert workers.may_adopt("sc") and retired == [1]  # a was idle the longest
    workers.adopt("sc", c, None)
    workers.end("sc")
    assert retired == [1, 3] and not workers.may_adopt("sc")  # ended: never kept again
    workers.expire(b.idle_since + 59)
    assert retired == [1, 3]
    workers.expire(b.idle_since + 60)
    assert retired == [1, 3, 2] and workers.workers == {} and workers.next_deadline() is None
