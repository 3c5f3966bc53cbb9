"""R5: 32 concurrent clients submit a fixed number of jobs; none fails, none is lost.

Each client thread has its own ``RuntimeService`` (its own connection pool) and runs its share of
the jobs one after the other, timing the submission and the whole round trip.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from reliability_support import BACKEND, percentile
from service_helpers import RunningService

from prefect_qiskit_runtime.client import RuntimeService

CLIENTS = 32
JOBS_PER_CLIENT = 16
ECHO = "def main(backend, user_messenger, x):\n    return x\n"


def test_r5_thirty_two_concurrent_clients(
    service: RunningService, figures: Callable[..., str]
) -> None:
    token = service.add_user("alice")
    direct = RuntimeService(service.url, token)
    program_id = direct.upload_program(
        ECHO, name=f"r5-{time.time_ns()}", description="r5", max_execution_time=120
    )
    submit_ms: list[float] = []
    round_trip_ms: list[float] = []
    errors: list[BaseException] = []
    submitted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        runtime = RuntimeService(service.url, token)
        start.wait()
        for k in range(JOBS_PER_CLIENT):
            x = index * JOBS_PER_CLIENT + k
            began = time.perf_counter()
            try:
                job = runtime.run(program_id, BACKEND, {"x": x})
                sent = time.perf_counter()
                assert job.result(timeout=300) == x
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                continue
            done = time.perf_counter()
            with lock:
                submitted.append(job.job_id())
                submit_ms.append((sent - began) * 1000)
                round_trip_ms.append((done - began) * 1000)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.perf_counter() - began
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    total = CLIENTS * JOBS_PER_CLIENT
    held = direct.jobs(limit=None, program_id=program_id)
    assert sorted(j.job_id() for j in held) == sorted(submitted)
    assert len(submitted) == total
    assert {j.state.value for j in held} == {"COMPLETED"}
    figures(
        "R5 load",
        clients=CLIENTS,
        jobs=total,
        errors=len(errors),
        lost=total - len(held),
        duplicates=len(held) - len(set(submitted)),
        seconds=round(elapsed, 1),
        jobs_per_second=round(total / elapsed, 1),
        submit_ms_p50=round(percentile(submit_ms, 50), 1),
        submit_ms_p99=round(percentile(submit_ms, 99), 1),
        round_trip_ms_p50=round(percentile(round_trip_ms, 50), 1),
        round_trip_ms_p99=round(percentile(round_trip_ms, 99), 1),
    )
