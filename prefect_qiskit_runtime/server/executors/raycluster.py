"""A throw-away one-node Ray cluster on this machine, to try the Ray executor, tests, benchmarks.

:func:`local_cluster` runs ``ray start --head --block`` in a session of its own, with every port
it would otherwise fix chosen free (so that it never clashes with another cluster on the machine)
and its files in a temporary directory, waits until the cluster is up and yields its address; at
the end it kills the session's process group (the cluster and its workers: nothing of it is meant
to outlive it, and Ray takes over 10 s to stop on SIGTERM) and removes the directory. It never
touches another cluster (it does not use ``ray stop``, which stops every cluster of the machine).

Example:
    >>> with local_cluster(num_cpus=2) as address:  # doctest: +SKIP
    ...     subprocess.run(["prefect-qiskit-runtime", "server", "start", "--executor", "ray",
    ...                     "--ray-address", address])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from prefect_qiskit_runtime.server.executors.rayjob import JOBS_DIR, remove_stale

__all__ = ["local_cluster"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_cluster(
    num_cpus: int = 2, *, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run a one-node Ray cluster for the duration of the ``with`` block.

    Args:
        num_cpus: CPUs the node offers (how many jobs run at once, one CPU each).
        timeout: Seconds the cluster may take to start.
        env: The cluster's environment (default: this process's); its workers inherit it, so it
            must let them import this package (``PYTHONPATH`` of a source checkout, for one).

    Yields:
        The cluster's address ``127.0.0.1:PORT``.

    Raises:
        RuntimeError: ``ray start`` failed or did not finish in time (with the end of its log).
    """
    # Short: Ray's unix sockets live beneath it, and their paths may not exceed 108 bytes.
    temp = tempfile.mkdtemp(prefix="pqr-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    port = _free_port()
    log_path = Path(temp, "ray-start.log")
    ray_cli = Path(sys.executable).with_name("ray")
    command = [
        str(ray_cli) if ray_cli.exists() else "ray",
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=temp,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while b"Ray runtime started" not in log_path.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ray start did not start a cluster:\n{tail}")
            time.sleep(0.1)  # polling its log, with a deadline
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
        # Its confined jobs could not remove their own directories.
        remove_stale(os.path.join(tempfile.gettempdir(), JOBS_DIR))
