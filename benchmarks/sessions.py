#!/usr/bin/env python
"""A hybrid loop of Prefect tasks, each evaluating the energy inside a session, and without one.

Usage::

    python benchmarks/sessions.py [--iterations N] [--warmup W] [--json PATH]

or ``python benchmarks/run.py --session-loop N`` (the same measurement, after the other ones, in a
process of its own). One service is started in a temporary home, and ``qiskit-ibm-runtime`` is
pointed at it as ``docs/tutorials/qiskit-ibm-runtime.md`` shows. The loop evaluates the energy of
``benchmarks/problem.py``'s ansatz on ``aer_simulator`` (the problem and backend of ``run.py``'s
hybrid loop) for N fixed parameter vectors. Figures, each a median in ms per iteration:

- ``bare_ms``: the estimator the service runs for that backend (Aer's ``EstimatorV2``, exact), in
  this process, inside the flow but outside any task run;
- ``bare_alone_ms``: the same before the flow started (no Prefect run in the process);
- ``floor_ms``: an empty Prefect task per iteration inside a flow;
- ``session_ms``: one Prefect task per iteration inside the flow, each calling this package's
  session cost (``estimator_cost(..., session=True)``: one serving ``estimator`` job answers
  every iteration over its channel);
- ``session_client_ms``: the same cost called without Prefect (what the service and client add);
- ``job_per_iteration_ms``: the task calling ``estimator_cost(...)`` without a session (one job
  per iteration);
- ``ibm_session_ms``: the task running qiskit-ibm-runtime's
  ``EstimatorV2(mode=session).run([pub]).result()`` inside one ``Session`` (a job per iteration,
  in a session's kept worker); ``ibm_no_session_ms`` the same with ``mode=backend``;
- ``added_ms`` = ``session_ms - floor_ms - bare_ms``, against the issue's target of 2 ms (all
  three measured at the same moments, see below);
- ``added_vs_alone_ms`` = ``session_ms - floor_ms - bare_alone_ms``: the same against the
  estimator measured with no Prefect run in the process (the Prefect run's background work slows
  the in-flow estimator as it slows the session's job, so this one is the stricter);
- ``max_energy_error``: the largest difference of any energy from the exact reference.

``bare_ms``, ``floor_ms`` and ``session_ms`` are measured taking turns in blocks of ``BLOCK``
iterations (in a rotating order), so that all three see the same moments of the machine.

The Prefect API is a ``prefect_test_harness`` of this process, in a temporary ``PREFECT_HOME``
(its start-up is not measured).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import problem  # noqa: E402

#: The backend of the loop (the one of ``run.py``'s hybrid loop).
BACKEND = "aer_simulator"
#: Iterations a step runs back to back before the next step's turn (see ``interleaved``).
BLOCK = 20
#: The issue's target for what the package adds per iteration.
TARGET_ADDED_MS = 2.0
FIGURES = (
    "iterations",
    "bare_ms",
    "bare_alone_ms",
    "floor_ms",
    "session_ms",
    "session_client_ms",
    "job_per_iteration_ms",
    "ibm_session_ms",
    "ibm_no_session_ms",
    "added_ms",
    "added_vs_alone_ms",
    "max_energy_error",
)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def ibm_service(url: str, token: str) -> Any:
    """A ``QiskitRuntimeService`` pointed at the service of ``url`` (the tutorial's way)."""
    os.environ["IAM_URL"] = url + "/iam"
    os.environ["GLOBAL_SEARCH_URL"] = url + "/global-search"
    os.environ["GLOBAL_CATALOG_URL"] = url + "/global-catalog"
    from qiskit_ibm_runtime import QiskitRuntimeService

    return QiskitRuntimeService(
        channel="ibm_quantum_platform",
        token=token,
        url=url,
        url_resolver=lambda u, instance, private_endpoint, channel: u + "/api/v1",
        instance="auto",
    )


def open_session(service: Any, backend: str) -> Any:
    """A dedicated session on ``backend``, as a ``qiskit_ibm_runtime.Session``.

    On a simulator the client's ``Session(backend=...)`` opens no session on the server (it runs
    its jobs in job mode, as on IBM's); the session is therefore created with the request that
    ``Session`` sends for a device, and taken up with ``Session.from_id``.
    """
    from qiskit_ibm_runtime import Session

    client = service._get_api_client()
    created = client.create_session(backend, service._account.instance, None, "dedicated")
    return Session.from_id(created["id"], service)


def measure(url: str, token: str, iterations: int, warmup: int) -> dict[str, Any]:
    """Every figure of the module docstring against the service at ``url``."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from qiskit_ibm_runtime import EstimatorV2

    from prefect_qiskit_runtime.prefect.blocks import QiskitRuntimeBackend, QiskitRuntimeCredentials
    from prefect_qiskit_runtime.prefect.loops import estimator_cost
    from prefect_qiskit_runtime.server.backends import build_backend, estimator_for

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    service = ibm_service(url, token)
    backend = service.backend(BACKEND)
    circuit, observable = problem.ansatz(), problem.hamiltonian()
    vectors = problem.parameter_vectors(iterations)
    warm = problem.parameter_vectors(warmup + 1000)[1000:]
    reference = problem.exact_energies(vectors)
    out: dict[str, Any] = {"iterations": iterations}
    energies: dict[str, list[float]] = {}

    # The very primitive the service's estimator program builds for this backend.
    local = estimator_for(build_backend(BACKEND, cached=True))

    def evaluate(estimator: Any, params: list[float]) -> float:
        return float(estimator.run([(circuit, observable, params)]).result()[0].data.evs)

    def series(
        name: str, step: Callable[[list[float]], float], warm_up: list[list[float]]
    ) -> float:
        return interleaved({name: step}, warm_up)[name]

    def interleaved(
        steps: dict[str, Callable[[list[float]], float]], warm_up: list[list[float]]
    ) -> dict[str, float]:
        """Median ms of each step, the steps taking turns in blocks of ``BLOCK`` iterations.

        Within a block a step runs back to back, as a loop does (a task run's background work
        in Prefect, its events and logs, spills into the next iteration of the same loop);
        the blocks take turns in a rotating order, so that drift of the machine (CPU
        frequency, the Prefect server's backlog) does not favour the step measured first.
        """
        for params in warm_up:
            for step in steps.values():
                step(params)
        names = list(steps)
        times: dict[str, list[float]] = {name: [] for name in names}
        for name in names:
            energies[name] = [0.0] * len(vectors)
        blocks = [range(i, min(i + BLOCK, len(vectors))) for i in range(0, len(vectors), BLOCK)]
        for b, block in enumerate(blocks):
            for name in names[b % len(names) :] + names[: b % len(names)]:
                for i in block:
                    began = time.perf_counter()
                    energies[name][i] = steps[name](vectors[i])
                    times[name].append((time.perf_counter() - began) * 1000)
        return {name: _median(values) for name, values in times.items()}

    out["bare_alone_ms"] = series("bare_alone", lambda p: evaluate(local, p), warm)
    block = QiskitRuntimeBackend(
        credentials=QiskitRuntimeCredentials(url=url, token=token), backend_name=BACKEND
    )
    with estimator_cost(block, circuit, observable, session=True) as cost:
        out["session_client_ms"] = series("session_client", lambda p: cost(np.asarray(p)), warm)

    # No cache key: the cost argument cannot be hashed. The floor takes what the loop's task takes.
    @task(cache_policy=NO_CACHE)
    def empty(cost: Any, params: list[float]) -> float:
        return 0.0

    @task(cache_policy=NO_CACHE)
    def energy(cost: Any, params: list[float]) -> float:
        return float(cost(np.asarray(params)))

    @task(cache_policy=NO_CACHE)
    def ibm_energy(estimator: Any, params: list[float]) -> float:
        return evaluate(estimator, params)

    @flow(name="session-loop-benchmark")
    def loop() -> dict[str, float]:
        figures: dict[str, float] = {}
        with estimator_cost(block, circuit, observable, session=True) as cost:
            turns = interleaved(
                {
                    "bare": lambda p: evaluate(local, p),
                    "floor": lambda p: empty(cost, p),
                    "session": lambda p: energy(cost, p),
                },
                warm,
            )
        figures.update({f"{name}_ms": value for name, value in turns.items()})
        per_job = estimator_cost(block, circuit, observable)
        figures["job_per_iteration_ms"] = series(
            "job_per_iteration", lambda p: energy(per_job, p), warm[:1]
        )
        with open_session(service, BACKEND) as session:
            in_session = EstimatorV2(mode=session)
            figures["ibm_session_ms"] = series(
                "ibm_session", lambda p: ibm_energy(in_session, p), warm
            )
        alone = EstimatorV2(mode=backend)
        figures["ibm_no_session_ms"] = series(
            "ibm_no_session", lambda p: ibm_energy(alone, p), warm[:1]
        )
        return figures

    out.update(loop())
    out["added_ms"] = out["session_ms"] - out["floor_ms"] - out["bare_ms"]
    out["added_vs_alone_ms"] = out["session_ms"] - out["floor_ms"] - out["bare_alone_ms"]
    worst = max(
        float(np.max(np.abs(np.asarray(got) - reference)))
        for name, got in energies.items()
        if name != "floor"
    )
    out["max_energy_error"] = worst
    return out


def run_measurement(iterations: int, warmup: int, workers: int = 2) -> dict[str, Any]:
    """Start a service and a Prefect test API in temporary homes, measure, clean up."""
    scratch = Path(tempfile.mkdtemp(prefix="pqr-sessions-"))
    os.environ["PREFECT_HOME"] = str(scratch / "prefect-home")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    for key in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
        os.environ.pop(key, None)
    import run as bench

    service = bench.Service.start(scratch / "service-home", "--workers", str(workers))
    try:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            return measure(service.url, service.token, iterations, warmup)
    finally:
        service.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def measure_in_subprocess(scratch: Path, iterations: int, warmup: int = 3) -> dict[str, Any]:
    """Run this module in a fresh interpreter (its own Prefect home and service); its report.

    Raises:
        RuntimeError: If the measurement fails; the message holds the end of its output.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "session-loop.json"
    args = [sys.executable, str(Path(__file__).resolve()), "--iterations", str(iterations)]
    done = subprocess.run(
        [*args, "--warmup", str(warmup), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"sessions.py exited with {done.returncode}:\n{done.stdout[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def render(console: Any, report: dict[str, Any]) -> None:
    """Print the figures as a rich table, with ``added_ms`` against the target."""
    from rich.table import Table

    table = Table(title=f"session loop ({report.get('iterations')} iterations, ms per iteration)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in FIGURES[1:]:
        value = report.get(key)
        table.add_row(key, "[red]n/a[/red]" if value is None else f"{value:,.2f}")
    added = report.get("added_ms")
    if added is not None:
        ok = added <= TARGET_ADDED_MS
        verdict = "[green]pass[/green]" if ok else "[red]FAIL[/red]"
        table.add_row(f"added <= {TARGET_ADDED_MS:g} ms", verdict)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="the service's --workers")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    from rich.console import Console

    report = run_measurement(args.iterations, args.warmup, args.workers)
    render(Console(highlight=False), report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
