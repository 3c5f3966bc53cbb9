"""The import names runtime programs written for the original clients expect, inside a job.

Programs written against the template of ``qiskit-ibmq-provider`` start with
``from qiskit.providers.ibmq.runtime import UserMessenger, ProgramBackend``; those written for
the early ``qiskit-ibm-runtime`` import ``from qiskit_ibm_runtime.program import UserMessenger``.
Neither package can live beside Qiskit 2, so :func:`install` adds an import finder (in the job's
process only, before its program is loaded) that serves these modules with this service's own
classes:

===============================================  =============================================
module                                           names
===============================================  =============================================
``qiskit.providers.ibmq``                        ``RunnerResult``
``qiskit.providers.ibmq.runtime``                ``UserMessenger``, ``ProgramBackend``,
                                                 ``ResultDecoder``, ``RuntimeEncoder``,
                                                 ``RuntimeDecoder``
``qiskit.providers.ibmq.runtime.utils``          ``RuntimeEncoder``, ``RuntimeDecoder``
``qiskit.providers.ibmq.runtime.program``        ``UserMessenger``, ``ProgramBackend``,
(and ``.user_messenger``, ``.program_backend``,  ``ResultDecoder``
``.result_decoder``)
``qiskit_ibm_runtime`` (only when not installed)  ``RuntimeEncoder``, ``RuntimeDecoder``
``qiskit_ibm_runtime.program`` (and the same      as ``qiskit.providers.ibmq.runtime.program``
submodules), ``qiskit_ibm_runtime.utils``,
``qiskit_ibm_runtime.utils.json``
===============================================  =============================================

``ProgramBackend`` is Qiskit's ``BackendV2``, which the backend a program receives is;
``UserMessenger`` is the messenger it receives. A real ``qiskit_ibm_runtime`` that is installed
keeps its own modules; only its missing ``program`` part is served.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["LEGACY_MODULES", "install"]


def _codec() -> dict[str, Any]:
    from prefect_qiskit_runtime.core.codec import RuntimeDecoder, RuntimeEncoder

    return {"RuntimeEncoder": RuntimeEncoder, "RuntimeDecoder": RuntimeDecoder}


def _program() -> dict[str, Any]:
    from qiskit.providers import BackendV2

    from prefect_qiskit_runtime.core.codec import ResultDecoder
    from prefect_qiskit_runtime.server.runner import UserMessenger

    return {
        "UserMessenger": UserMessenger,
        "ProgramBackend": BackendV2,
        "ResultDecoder": ResultDecoder,
    }


def _runtime() -> dict[str, Any]:
    return {**_program(), **_codec()}


def _provider() -> dict[str, Any]:
    from prefect_qiskit_runtime.core import codec

    return {"RunnerResult": codec.RunnerResult}


def _program_part(prefix: str) -> dict[str, Callable[[], dict[str, Any]]]:
    """The ``program`` package of ``prefix`` and the submodules the original split it into."""
    return {
        f"{prefix}.program": _program,
        f"{prefix}.program.user_messenger": _program,
        f"{prefix}.program.program_backend": _program,
        f"{prefix}.program.result_decoder": _program,
    }


#: Module name → what it holds (built on first import, inside the job's process).
LEGACY_MODULES: dict[str, Callable[[], dict[str, Any]]] = {
    "qiskit.providers.ibmq": _provider,
    "qiskit.providers.ibmq.runtime": _runtime,
    "qiskit.providers.ibmq.runtime.utils": _codec,
    **_program_part("qiskit.providers.ibmq.runtime"),
    "qiskit_ibm_runtime": _codec,
    "qiskit_ibm_runtime.utils": _codec,
    "qiskit_ibm_runtime.utils.json": _codec,
    **_program_part("qiskit_ibm_runtime"),
}


class _LegacyFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds and builds the modules of :data:`LEGACY_MODULES`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for a legacy module name (asked last: an installed module always wins)."""
        if fullname not in LEGACY_MODULES:
            return None
        is_package = any(name.startswith(fullname + ".") for name in LEGACY_MODULES)
        return importlib.util.spec_from_loader(fullname, self, is_package=is_package)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        """The default module object."""
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Fill the module with its names."""
        module.__dict__.update(LEGACY_MODULES[module.__name__]())


_FINDER = _LegacyFinder()


def install() -> None:
    """Make the legacy module names importable in this process (idempotent).

    Example:
        >>> install()
        >>> from qiskit.providers.ibmq.runtime import UserMessenger  # doctest: +SKIP
    """
    # Last, so that an installed package of the same name is always found first.
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
