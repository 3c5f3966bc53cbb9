"""Serve the example flows as deployments with schedules, runnable from the Prefect UI.

Run it with ``python flows/deploy.py``. It serves four deployments until you stop it with Ctrl-C.
It works with Prefect's temporary server too, but to see and start the deployments in the UI, run
``prefect server start`` in another terminal and point ``PREFECT_API_URL`` at it first.

- ``runtime-health-check/every-15-minutes``: runs ``hello-world`` to check the runtime service;
- ``h2-vqe/nightly``: the VQE flow, every night at 02:00 UTC;
- ``h2-dissociation-curve/weekly``: the dissociation-curve pipeline, Mondays at 03:00 UTC;
- ``qaoa-maxcut/on-demand``: no schedule, start it from the UI with your own graph.

Every deployment takes ``backend_block``: the name of a saved ``QiskitRuntimeBackend`` block, so a
shared runtime service is one block away (see the *Moving to a shared service* tutorial). To run the
same flows on a work pool instead, use ``prefect.yaml`` beside this file with ``prefect deploy``.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from datetime import timedelta
from typing import Any

from pipeline import dissociation_curve
from prefect import flow, serve
from prefect.deployments.runner import RunnerDeployment
from qaoa_maxcut import qaoa_maxcut
from vqe import vqe

from prefect_qiskit_runtime import QiskitRuntimeBackend
from prefect_qiskit_runtime.prefect.tasks import run_and_await


@flow(name="runtime-health-check", log_prints=True)
def runtime_health_check(iterations: int = 1, backend_block: str | None = None) -> Any:
    """Run ``hello-world`` and fail unless it answers ``All done!``.

    Args:
        iterations: Random circuits the program runs (one interim result each).
        backend_block: Name of a saved ``QiskitRuntimeBackend`` block; default: embedded Aer.

    Returns:
        The program's result.
    """
    backend = QiskitRuntimeBackend.load(backend_block) if backend_block else QiskitRuntimeBackend()
    result: Any = run_and_await(backend, "hello-world", {"iterations": iterations})
    if result != "All done!":
        raise RuntimeError(f"hello-world answered {result!r}")
    print(f"runtime service healthy: {result}")
    return result


def deployments(backend_block: str | None = None) -> list[RunnerDeployment]:
    """The deployments this file serves.

    Args:
        backend_block: Default ``backend_block`` parameter of every deployment.

    Returns:
        Deployments ready for ``serve``.
    """
    params = {"backend_block": backend_block}
    tags = ["qiskit-runtime"]
    # `to_deployment` is typed as possibly async; called from sync code it returns the deployment.
    built: list[Any] = [
        runtime_health_check.to_deployment(
            name="every-15-minutes",
            interval=timedelta(minutes=15),
            parameters=params,
            tags=tags,
            description="Run hello-world on the runtime service.",
        ),
        vqe.to_deployment(
            name="nightly",
            cron="0 2 * * *",
            parameters=params,
            tags=[*tags, "chemistry"],
            description="H2 VQE, client-side and server-side, against exact diagonalization.",
        ),
        dissociation_curve.to_deployment(
            name="weekly",
            cron="0 3 * * 1",
            parameters=params,
            tags=[*tags, "chemistry"],
            description="H2 dissociation curve: one VQE subflow per bond length.",
        ),
        qaoa_maxcut.to_deployment(
            name="on-demand",
            parameters=params,
            tags=[*tags, "optimization"],
            description="MaxCut with QAOA on a graph you give.",
        ),
    ]
    return built


if __name__ == "__main__":
    serve(*deployments(os.environ.get("QISKIT_RUNTIME_BACKEND_BLOCK")))
