"""The Ray executor on a real Ray cluster, through a real service and the real client.

A module fixture runs a one-node cluster of 2 CPUs (``raycluster.local_cluster``: ``ray start
--head --block`` in a session of its own, killed as a process group at the end); the service runs
``--executor ray --workers 2`` with the cluster's address in ``PREFECT_QISKIT_RUNTIME_RAY_ADDRESS``,
and the cluster's workers import this package through the ``PYTHONPATH`` they inherit from ``ray
start`` (the executor sets no ``runtime_env``). Starting the cluster and the service takes about
10 s on two cores, a job about 1-2 s (a fresh worker process imports Qiskit): about 20 s in all.

The two refusals (Ray missing, no cluster at the address) need no cluster and run even without Ray.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from service_helpers import RunningService, cli, start_service, stop_service

from prefect_qiskit_runtime.client import RuntimeService
from prefect_qiskit_runtime.core.exceptions import RuntimeJobFailureError
from prefect_qiskit_runtime.server.executors.raycluster import local_cluster

BACKEND = {"backend_name": "aer_simulator"}

#: Publishes its directory and pid, writes a secret, waits for ``go`` in its directory (or reads
#: another job's secret and lists that job's directory), prints (``spam`` more lines of 100 bytes)
#: and logs, then returns or raises.
PROGRAM = """
import logging, os, sys, time

def main(backend, user_messenger, peek=None, fail=False, wait=True, count=3, spam=0):
    user_messenger.publish({"dir": os.getcwd(), "pid": os.getpid()})
    for _ in range(spam):
        print("x" * 99)
    with open("secret.txt", "w") as fh:
        fh.write("mine")
    print("stdout of the job")
    print("stderr of the job", file=sys.stderr)
    logging.getLogger("ray-test").warning("a logged warning")
    seen = {}
    if peek is not None:
        for what, probe in (("read", lambda: open(os.path.join(peek, "secret.txt")).read()),
                            ("list", lambda: os.listdir(peek))):
            try:
                probe()
                seen[what] = "allowed"
            except OSError as exc:
                seen[what] = type(exc).__name__
    deadline = time.monotonic() + 120
    while wait and not os.path.exists("go") and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(count):
        user_messenger.publish({"i": i})
    if fail:
        raise ValueError("the program failed on purpose")
    return {"backend": backend.name, "seen": seen}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A one-node Ray cluster (2 CPUs) of this module; yields its GCS address."""
    pytest.importorskip("ray")
    with local_cluster(num_cpus=2) as address:
        yield address


@pytest.fixture(scope="module")
def ray_service(
    ray_address: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """A service running jobs on the module's cluster, 2 at a time."""
    svc = start_service(
        tmp_path_factory.mktemp("ray-home"),
        "--executor",
        "ray",
        "--workers",
        "2",
        env={"PREFECT_QISKIT_RUNTIME_RAY_ADDRESS": ray_address},
    )
    yield svc
    stop_service(svc)


@pytest.fixture(scope="module")
def client(ray_service: RunningService) -> RuntimeService:
    return RuntimeService(ray_service.url, ray_service.add_user("alice"))


@pytest.fixture(scope="module")
def program_id(client: RuntimeService) -> str:
    return client.upload_program(
        PROGRAM, name="ray-probe", description="ray executor tests", max_execution_time=300
    )


class _Stream:
    """A ``run(callback=...)`` callback that records what arrives, and when the first did."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.first = threading.Event()

    def __call__(self, _job_id: str, message: Any) -> None:
        self.messages.append(message)
        self.first.set()


def test_ray_job_streams_while_running_captures_logs_and_is_isolated(
    client: RuntimeService, program_id: str
) -> None:
    stream = _Stream()
    holder = client.run(program_id, BACKEND, {"count": 3}, callback=stream)
    assert stream.first.wait(120), "the first interim result never arrived"
    # The job is waiting for "go": the first interim result came while it ran.
    assert client.job(holder.job_id()).state.value == "RUNNING"
    first = stream.messages[0]
    holder_dir = first["dir"]
    assert Path(holder_dir).parent.name == "pqr-ray-jobs"

    # A second job, at the same time in another worker process, cannot see the first one's files.
    peeker = client.run(program_id, BACKEND, {"peek": holder_dir, "wait": False, "count": 0})
    peeked = peeker.result(timeout=120)
    assert peeked["seen"] == {"read": "PermissionError", "list": "PermissionError"}
    assert peeker.interim_results()[0]["pid"] != first["pid"]

    Path(holder_dir, "go").write_text("")
    assert holder.result(timeout=120) == {"backend": "aer_simulator", "seen": {}}
    holder.wait_for_final_state(timeout=30)
    assert stream.messages[1:] == [{"i": 0}, {"i": 1}, {"i": 2}]
    logs = holder.logs()
    for line in ("stdout of the job", "stderr of the job", "a logged warning"):
        assert line in logs
    assert _ended(first["pid"], 30), "the job's worker process outlived its job (max_calls=1)"


def test_ray_program_error_fails_with_its_traceback(
    client: RuntimeService, program_id: str
) -> None:
    # 1.2 MB of output, over the service's log limit of 1 MB.
    job = client.run(program_id, BACKEND, {"wait": False, "fail": True, "count": 1, "spam": 12_000})
    with pytest.raises(RuntimeJobFailureError) as failure:
        job.result(timeout=120)
    message = str(failure.value)
    assert "Traceback" in message and "ValueError: the program failed on purpose" in message
    assert 'program.py", line' in message
    assert job.reason_code is not None and job.reason_code.value == "PROGRAM_ERROR"
    logs = job.logs()
    assert logs.startswith("x" * 99) and "[log truncated:" in logs
    assert 1_000_000 - 200 < len(logs.encode()) < 1_000_200


def test_ray_cancel_and_max_execution_time_kill_the_worker(
    client: RuntimeService, program_id: str
) -> None:
    cancelled_stream, timed_stream = _Stream(), _Stream()
    cancelled = client.run(program_id, BACKEND, {}, callback=cancelled_stream)
    # The limit counts from RUNNING, which includes the start of a Ray worker (0.7 s here, more on a
    # busy machine): it must leave time for the job's first message.
    timed = client.run(program_id, {**BACKEND, "max_execution_time": 10}, {}, callback=timed_stream)
    assert cancelled_stream.first.wait(120) and timed_stream.first.wait(120)
    cancelled.cancel()
    assert client.job(cancelled.job_id()).state.value == "CANCELLED"
    with pytest.raises(RuntimeJobFailureError, match="maximum execution time"):
        timed.result(timeout=120)
    assert client.job(timed.job_id()).state.value == "CANCELLED - RAN TOO LONG"
    for stream in (cancelled_stream, timed_stream):
        # Killed, not left to finish its two-minute wait for "go".
        assert _ended(stream.messages[0]["pid"], 15), "the worker still runs"


def _ended(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` has ended, waiting for it up to ``timeout`` seconds."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    _, alive = psutil.wait_procs([process], timeout=timeout)
    return not alive


# ---- refusals: one line, no traceback; no cluster needed ----------------------------------------


@pytest.fixture
def without_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Child interpreters find a ``ray`` that fails to import, as where Ray is not installed."""
    stub = tmp_path / "no-ray"
    stub.mkdir()
    (stub / "ray.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))
    )


def _refused(*args: str) -> str:
    done = cli("server", "start", "--port", "0", "--executor", *args, check=False, timeout=90)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_ray_executor_without_ray_is_one_clear_error(without_ray: None, tmp_path: Path) -> None:
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import prefect_qiskit_runtime.server.executors.rayexec, "
            "prefect_qiskit_runtime.server.app, prefect_qiskit_runtime.cli",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    line = _refused("ray", "--home", str(tmp_path / "home"))
    assert "needs Ray" in line and "prefect-qiskit-runtime[ray]" in line


def test_ray_executor_without_a_cluster_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    line = _refused(
        "prefect_qiskit_runtime.server.executors.rayexec:factory",
        "--ray-address",
        address,
        "--home",
        str(tmp_path / "home"),
    )
    assert f"no Ray cluster answers at {address}" in line
