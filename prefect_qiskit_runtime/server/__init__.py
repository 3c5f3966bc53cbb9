"""The runtime service: the Qiskit Runtime program API served by FastAPI on local simulators.

Start it with ``prefect-qiskit-runtime server start`` or build the ASGI app with
:func:`prefect_qiskit_runtime.server.app.create_app`. Nothing in this package imports Qiskit or
Prefect at import time; programs run in isolated worker processes (see ``executors/``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.app import create_app
    from prefect_qiskit_runtime.server.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a submodule (for example the runner inside a worker) stays cheap.
    if name == "create_app":
        from prefect_qiskit_runtime.server.app import create_app

        return create_app
    if name == "ServiceConfig":
        from prefect_qiskit_runtime.server.config import ServiceConfig

        return ServiceConfig
    raise AttributeError(f"module 'prefect_qiskit_runtime.server' has no attribute {name!r}")
