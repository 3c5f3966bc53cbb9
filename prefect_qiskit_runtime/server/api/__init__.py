"""The routes of the service, one thin module per resource.

Each route parses its request, calls one use case (``server/usecases/``) and shapes the answer;
no route holds SQL or a business rule. :mod:`.modern` serves the modern Qiskit Runtime API
(``qiskit-ibm-runtime``) beside the old one. :data:`ROUTERS` is the order
:func:`~prefect_qiskit_runtime.server.app.create_app` includes them in, which is also the order of
the paths in ``/openapi.json``.
"""

from __future__ import annotations

from fastapi import APIRouter

from prefect_qiskit_runtime.server.api import channel, jobs, programs, service, stream
from prefect_qiskit_runtime.server.api.modern import MODERN_ROUTERS

ROUTERS: tuple[APIRouter, ...] = (
    service.router,
    programs.router,
    jobs.router,
    stream.router,
    channel.router,
    *MODERN_ROUTERS,
)

__all__ = ["ROUTERS"]
