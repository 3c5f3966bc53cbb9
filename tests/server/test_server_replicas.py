"""Two replicas of the service on one PostgreSQL database, as behind one load balancer.

Each test starts two services through the CLI with ``--database-url`` (and ``--sandbox off``: the
program appends to a ledger file outside its directory, so a job run twice leaves two lines even
though only one run could record a result). Clients spread their requests over the replicas
round-robin and, like a load balancer, send a request to the other replica when one cannot be
reached. Job submissions carry an ``Idempotency-Key``, so a submission retried on the other
replica after the first one acted finds the same job.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from server_helpers import Api
from service_helpers import RunningService, cli, start_service, stop_service

from prefect_qiskit_runtime.server.store import Store
from prefect_qiskit_runtime.server.store.tables import JOBS

T = TypeVar("T")

COUNTED = """
import os, time

def main(backend, user_messenger, n, ledger, pause=0.0, **kwargs):
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{n}\\n".encode())
    os.close(fd)
    time.sleep(pause)
    return n * n + 1
"""
#: What a replica killed under a running job leaves it with (retryable: a job-level retry
#: submits it again, as the Prefect tasks do).
LOST = ("FAILED", "SERVICE_RESTARTED")


@dataclass
class Replicas:
    """Services sharing one database, and one user's token on them."""

    services: list[RunningService]
    token: str
    program: str = ""

    def apis(self) -> list[Api]:
        """Fresh clients (one HTTP session each) of every replica, for one thread."""
        return [Api(service.url, self.token) for service in self.services]

    def instance_ids(self) -> list[str]:
        return [
            requests.get(service.url + "/health", timeout=30).json()["instance_id"]
            for service in self.services
        ]


def _start(tmp_path: Path, url: str, *extra: str) -> Iterator[Replicas]:
    args = ("--workers", "2", "--sandbox", "off", "--database-url", url, *extra)
    services = [start_service(tmp_path / f"replica-{n}", *args) for n in range(2)]
    try:
        out = cli(
            "users", "add", "replica-user", "--can-upload",
            "--home", str(services[0].home), "--database-url", url,
        )  # fmt: skip
        replicas = Replicas(services, out.stdout.strip().splitlines()[-1])
        replicas.program = replicas.apis()[0].upload(COUNTED, "counted")
        yield replicas
    finally:
        for service in services:
            stop_service(service)


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    yield from _start(tmp_path, postgres_url)


@pytest.fixture
def short_lease_replicas(tmp_path: Path, postgres_url: str) -> Iterator[Replicas]:
    # A lease of 8 s: heartbeats (and the search for replicas that are gone) every 2 s.
    yield from _start(tmp_path, postgres_url, "--lease-seconds", "8")


def _running_jobs(service: RunningService) -> int:
    return int(requests.get(service.url + "/health", timeout=30).json()["running_jobs"])


def _balanced(apis: list[Api], first: int, call: Callable[[Api], T]) -> T:
    """``call`` on replica ``first``, or on the next one when it cannot be reached."""
    for turn in range(len(apis)):
        try:
            return call(apis[(first + turn) % len(apis)])
        except requests.ConnectionError:
            if turn == len(apis) - 1:
                raise
    raise AssertionError("unreachable")


def _submit(api: Api, program: str, params: dict[str, Any], key: str) -> str:
    body = {
        "program_id": program,
        "hub": "local",
        "group": "default",
        "project": "main",
        "backend": "aer_simulator",
        "params": params,
    }
    response = api.request("POST", "/jobs", json=body, headers={"Idempotency-Key": key})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


@dataclass
class Outcome:
    """What one client saw of one unit of work ``n``: every job it took, the last one done."""

    n: int
    jobs: list[dict[str, Any]]
    result: str


def _drive(
    replicas: Replicas,
    ledger: Path,
    total: int,
    threads: int,
    *,
    pause: float = 0.0,
    on_done: Callable[[int], None] = lambda _count: None,
) -> list[Outcome]:
    """Run ``total`` units of work from ``threads`` threads, each unit until it completes.

    A unit whose job was lost with a killed replica (``SERVICE_RESTARTED``) is submitted again
    under a new key, as a job-level retry does.
    """
    local = threading.local()
    done = Counter[str]()
    lock = threading.Lock()

    def unit(n: int) -> Outcome:
        if not hasattr(local, "apis"):
            local.apis = replicas.apis()
        jobs: list[dict[str, Any]] = []
        params = {"n": n, "ledger": str(ledger), "pause": pause}
        while True:
            key = f"unit-{n}-attempt-{len(jobs)}"
            job_id = _balanced(
                local.apis, n, lambda a, k=key: _submit(a, replicas.program, params, k)
            )
            job = _balanced(local.apis, n + 1, lambda a, j=job_id: a.wait(j))
            jobs.append(job)
            if (job["status"], job.get("reason_code")) != LOST:
                break
        assert job["status"] == "COMPLETED", job
        result = _balanced(local.apis, n, lambda a: a.get(f"/jobs/{job_id}/results").text)
        with lock:
            done["units"] += 1
            count = done["units"]
        on_done(count)
        return Outcome(n, jobs, result)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(unit, range(total)))


def _final_counts(url: str) -> tuple[dict[str, int], Counter[str]]:
    """The status counts in the database, and how many jobs each instance ran."""
    store = Store(url, create=False)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(JOBS.select().with_only_columns(JOBS.c.instance_id)).all()
        return store.status_counts(), Counter(str(row.instance_id) for row in rows)
    finally:
        store.dispose()


def test_two_replicas_run_every_job_exactly_once(
    replicas: Replicas, postgres_url: str, tmp_path: Path
) -> None:
    """500 jobs from 8 threads, alternating between the replicas: each runs once, none is lost."""
    total, ledger = 500, tmp_path / "ledger.txt"
    started = time.monotonic()
    outcomes = _drive(replicas, ledger, total, threads=8)
    seconds = time.monotonic() - started
    assert [len(o.jobs) for o in outcomes] == [1] * total
    assert [o.result for o in outcomes] == [str(n * n + 1) for n in range(total)]
    runs = Counter(int(line) for line in ledger.read_text().split())
    assert runs == dict.fromkeys(range(total), 1)  # every job ran, none twice
    statuses, ran_by = _final_counts(postgres_url)
    assert statuses == {"COMPLETED": total}
    instances = replicas.instance_ids()
    assert set(ran_by) == set(instances)  # both replicas ran jobs
    print(
        f"jobs {total}, completed {total}, each run once, per replica "
        f"{[ran_by[i] for i in instances]}, seconds {seconds:.1f}, "
        f"jobs per second {total / seconds:.1f}"
    )


def test_a_replica_killed_midway_loses_no_job(
    short_lease_replicas: Replicas, postgres_url: str, tmp_path: Path
) -> None:
    """500 units from 8 threads; replica 0 gets ``kill -9`` once 150 have completed.

    Its running jobs end failed-and-retryable, found by the survivor within a few heartbeats; the
    jobs still queued run on the survivor; each unit ends with exactly one completed job.
    """
    replicas, total, ledger = short_lease_replicas, 500, tmp_path / "ledger.txt"
    victim = replicas.services[0]
    victim_id, survivor_id = replicas.instance_ids()
    killed = threading.Event()
    kill_lock = threading.Lock()
    kill_time: list[float] = []  # wall clock, as the store's timestamps
    kill_count: list[int] = []

    def kill_at(count: int) -> None:
        # From 150 completed on, at the first moment the victim says it is running a job.
        if count < 150 or killed.is_set():
            return
        with kill_lock:
            if killed.is_set() or not _running_jobs(victim):
                return
            victim.process.send_signal(signal.SIGKILL)
            kill_time.append(time.time())
            kill_count.append(count)
            killed.set()

    # Each job sleeps 50 ms after writing the ledger: the replicas' slots are busy most of the time.
    outcomes = _drive(replicas, ledger, total, threads=8, pause=0.05, on_done=kill_at)
    assert killed.is_set() and victim.process.wait(timeout=30) == -signal.SIGKILL
    assert [o.result for o in outcomes] == [str(n * n + 1) for n in range(total)]

    lost = [job for o in outcomes for job in o.jobs[:-1]]
    assert all((job["status"], job.get("reason_code")) == LOST for job in lost)
    assert lost, "no job was running on the killed replica"
    statuses, ran_by = _final_counts(postgres_url)
    # Every job ever submitted is final: one COMPLETED per unit, one FAILED per lost job.
    assert statuses == {"COMPLETED": total, "FAILED": len(lost)}
    assert set(ran_by) == {victim_id, survivor_id}
    runs = Counter(int(line) for line in ledger.read_text().split())
    retried = {o.n for o in outcomes if len(o.jobs) > 1}
    assert {n for n in range(total) if runs[n] != 1} <= retried  # only a lost job ran twice
    assert all(runs[n] in (1, 2) for n in retried)
    assert set(runs) == set(range(total))

    store = Store(postgres_url, create=False)
    try:
        ended = [store.get_job(job["id"], light=True) for job in lost]
    finally:
        store.dispose()
    assert {job.instance_id for job in ended if job is not None} == {victim_id}
    after_kill = [job.ended.timestamp() - kill_time[0] for job in ended if job and job.ended]
    assert len(after_kill) == len(lost)
    recovery = max(after_kill)
    # Heartbeats every 2 s: the survivor notices the victim's process is gone at its next one.
    assert recovery < 15, recovery
    print(
        f"units {total}, killed after {kill_count[0]} completed, lost with the replica {len(lost)} "
        f"(failed retryable, resubmitted), completed {total}, ran twice {len(retried)}, "
        f"lost jobs failed within {recovery:.1f} s of the kill, jobs per replica "
        f"{ran_by[victim_id]} (killed) / {ran_by[survivor_id]}"
    )
