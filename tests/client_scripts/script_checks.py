# mypy: ignore-errors
"""Check recording shared by the scripts that run inside the old and the modern client's venvs.

A script records each check in :data:`RESULTS` under its own key (:func:`check`) and prints
``RESULTS`` as JSON on its last stdout line; pytest asserts on each key separately, so one broken
step fails one test and the others still report. Standard library only: it is imported by Python
3.11 interpreters holding nothing but a client and its Qiskit.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator
from typing import Any

RESULTS: dict[str, Any] = {}


@contextlib.contextmanager
def check(name: str) -> Iterator[dict[str, Any]]:
    """Record one check: the body fills the yielded dict; an exception is stored, not raised."""
    entry: dict[str, Any] = {}
    RESULTS[name] = entry
    try:
        yield entry
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()


def raised(func: Callable[[], Any]) -> dict[str, Any]:
    """Call ``func`` and describe what it raised (``{"type": None}`` when it returned)."""
    try:
        value = func()
    except Exception as exc:
        return {
            "type": type(exc).__name__,
            "mro": [cls.__name__ for cls in type(exc).__mro__],
            "message": str(exc),
            "status_code": getattr(exc, "status_code", None),
        }
    return {"type": None, "returned": repr(value)[:500]}
