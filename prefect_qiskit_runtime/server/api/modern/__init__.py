"""The part of the modern Qiskit Runtime REST API that ``qiskit-ibm-runtime`` uses for primitives.

``QiskitRuntimeService(channel="ibm_quantum_platform", url=ROOT, url_resolver=...)`` talks to
``ROOT/api/v1`` (backends, jobs, sessions, usage), after getting an access token from
``ROOT/iam`` and its instance from ``ROOT/global-search`` and ``ROOT/global-catalog``
(``docs/tutorials/qiskit-ibm-runtime.md``). Routes are thin, as everywhere in ``server/api/``:
the rules are in ``server/usecases/modern_*.py``.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import backends, identity, jobs, sessions

#: In the order they are included (and listed in ``/openapi.json``).
MODERN_ROUTERS: tuple[APIRouter, ...] = (
    identity.router,
    backends.router,
    jobs.router,
    sessions.router,
)

__all__ = ["MODERN_ROUTERS"]
