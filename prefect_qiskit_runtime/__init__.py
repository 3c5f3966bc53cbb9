"""Qiskit Runtime programs as observable Prefect flows, with an embedded runtime service.

Importing the package is cheap: the public names are loaded on first use, so the service can run
without Prefect in its process and a plain script using the client does not import Prefect.

When Prefect itself is already imported (``prefect block register -m prefect_qiskit_runtime``,
a Prefect server loading its collections), the block classes are imported at once so that
Prefect sees them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from prefect_qiskit_runtime._version import __version__

_LAZY = {
    "RuntimeService": "prefect_qiskit_runtime.client",
    "RuntimeJob": "prefect_qiskit_runtime.client",
    "RuntimeProgram": "prefect_qiskit_runtime.client",
    "RuntimeEncoder": "prefect_qiskit_runtime.core.codec",
    "RuntimeDecoder": "prefect_qiskit_runtime.core.codec",
    "ResultDecoder": "prefect_qiskit_runtime.core.codec",
    "RunnerResult": "prefect_qiskit_runtime.core.codec",
    "QiskitRuntimeCredentials": "prefect_qiskit_runtime.prefect.blocks",
    "QiskitRuntimeBackend": "prefect_qiskit_runtime.prefect.blocks",
    "QiskitRuntimePlatformCredentials": "prefect_qiskit_runtime.prefect.blocks",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prefect_qiskit_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if "prefect" in sys.modules:  # pragma: no branch - depends on the importing process
    try:
        _blocks = importlib.import_module("prefect_qiskit_runtime.prefect.blocks")
    except ModuleNotFoundError:
        pass
    else:
        # Bound here, not only importable: `prefect block register -m` scans the module's members.
        QiskitRuntimeCredentials = _blocks.QiskitRuntimeCredentials
        QiskitRuntimeBackend = _blocks.QiskitRuntimeBackend
        QiskitRuntimePlatformCredentials = _blocks.QiskitRuntimePlatformCredentials
