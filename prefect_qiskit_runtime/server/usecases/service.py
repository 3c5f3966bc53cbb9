"""Service use cases: health facts, Prometheus metrics and the backend catalogue."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime._version import __version__
from prefect_qiskit_runtime.server.usecases.validation import backend_catalogue

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.runtime import Runtime


def health(runtime: Runtime) -> dict[str, Any]:
    """Liveness and facts about this process, for the embedded launcher and probes.

    Args:
        runtime: The service instance.

    Returns:
        Status, version, pid, uptime, instance id, running jobs, capacity, whether Prefect and
        Qiskit are imported, the database dialect and the job sandbox.
    """
    scheduler = runtime.scheduler
    return {
        "status": "ok",
        "version": __version__,
        "pid": os.getpid(),
        "uptime": round(time.time() - runtime.started_at, 3),
        "instance_id": scheduler.instance_id if scheduler else None,
        "running_jobs": scheduler.running_count if scheduler else 0,
        "capacity": runtime.executor.capacity if runtime.executor else 0,
        "prefect_imported": "prefect" in sys.modules,
        "qiskit_imported": "qiskit" in sys.modules,
        "database": runtime.store.engine.dialect.name,
        # What confines job processes ("landlock", "off"); None for an executor that does not say.
        "sandbox": getattr(runtime.executor, "sandbox", None),
    }


def metrics_text(runtime: Runtime) -> tuple[bytes, str]:
    """The instance's metrics in the Prometheus text format.

    Args:
        runtime: The service instance.

    Returns:
        The exposition and its media type.
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(runtime.metrics.registry), CONTENT_TYPE_LATEST


def backend_configurations() -> list[dict[str, Any]]:
    """The configuration document of every backend a job may name.

    Returns:
        The documents (none where the backend catalogue is not available).
    """
    backends = backend_catalogue()
    return list(backends.list_configurations()) if backends else []


__all__ = ["backend_configurations", "health", "metrics_text"]
