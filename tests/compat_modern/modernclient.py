"""Build (once) and drive the real ``qiskit-ibm-runtime==0.51.0`` client in its own venv.

The modern client pins its own Qiskit and pulls IBM Cloud SDKs this project does not need, so it
lives in a virtual environment of its own, built once per machine under
``~/.cache/prefect-qiskit-runtime/qiskit-ibm-runtime-0.51`` and reused across runs, exactly like the
old client's (``tests/compat/oldclient.py``, whose venv builder and script runner this reuses).
The venv is keyed by the pinned requirement list: changing a pin builds a new one beside the old.

It imports nothing from the project and nothing outside the standard library.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "MODERN_CLIENT_REQUIREMENTS",
    "ScriptRunner",
    "cache_root",
    "ensure_modern_client_venv",
    "oldclient",
    "script_check",
]

#: A fixture-provided function: run ``modern_scripts/<name>.py`` in the venv, return its checks.
ScriptRunner = Callable[[str], dict[str, Any]]

#: Every distribution of the modern client's environment, pinned: what
#: ``pip install 'qiskit-ibm-runtime==0.51.*'`` resolved to on Python 3.11.
MODERN_CLIENT_REQUIREMENTS: tuple[str, ...] = (
    "qiskit-ibm-runtime==0.51.0",
    "qiskit==2.6.2",
    "annotated-types==0.8.0",
    "antlr4-python3-runtime==4.13.2",
    "certifi==2026.10.19.post1",
    "cffi==2.1.1",
    "charset-normalizer==3.5.3",
    "cryptography==51.0.1",
    "dill==0.4.1",
    "ibm-cloud-sdk-core==3.28.0",
    "ibm-platform-services==0.77.1",
    "ibm-quantum-schemas==0.13.20261016",
    "idna==3.21",
    "numpy==2.4.6",
    "openqasm3==1.0.1",
    "orjson==3.13.0",
    "pybase64==1.5.1",
    "pycparser==3.12",
    "pydantic==2.14.4",
    "pydantic-core==2.50.5",
    "pyjwt==2.15.1",
    "pyspnego==0.12.4",
    "python-dateutil==2.9.0.post0",
    "qiskit-mitigation==0.1.1",
    "qiskit-qasm3-import==0.6.0",
    "requests==2.34.2",
    "requests-ntlm==1.3.0",
    "rustworkx==0.18.1",
    "samplomatic==0.21.0",
    "scipy==1.17.1",
    "six==1.17.0",
    "stevedore==5.10.0",
    "typing-extensions==4.16.0",
    "typing-inspection==0.4.5",
    "urllib3==2.8.0",
)

_IMPORT_CHECK = (
    "import json, qiskit, qiskit_ibm_runtime; "
    "from qiskit_ibm_runtime import QiskitRuntimeService, SamplerV2, EstimatorV2, Session, Batch; "
    "print(json.dumps({'runtime': qiskit_ibm_runtime.__version__, 'qiskit': qiskit.__version__}))"
)


def _load_oldclient() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "compat" / "oldclient.py"
    spec = importlib.util.spec_from_file_location("oldclient", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: ``tests/compat/oldclient.py``: its ``ensure_venv``, ``run_old_client`` (any venv's Python),
#: ``script_check`` and ``OldClientUnavailable``.
oldclient = _load_oldclient()


def cache_root() -> Path:
    """Return the directory that holds the cached venvs of the modern client.

    Returns:
        ``$XDG_CACHE_HOME/prefect-qiskit-runtime/qiskit-ibm-runtime-0.51`` (``~/.cache`` when the
        variable is unset or empty).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prefect-qiskit-runtime" / "qiskit-ibm-runtime-0.51"


def ensure_modern_client_venv(*, timeout: float = 1200) -> Path:
    """Return the Python of the cached ``qiskit-ibm-runtime==0.51.0`` venv, building it once.

    Args:
        timeout: Seconds allowed for each build step.

    Returns:
        The venv's ``python``.

    Raises:
        RuntimeError: Building the venv failed (with the output of the failing step).
    """
    ensure = oldclient.ensure_venv
    return Path(ensure(cache_root(), MODERN_CLIENT_REQUIREMENTS, _IMPORT_CHECK, timeout=timeout))


def script_check(results: dict[str, Any], name: str) -> dict[str, Any]:
    """Check ``name`` of a script's results; fail with the script's traceback if it raised."""
    value: dict[str, Any] = oldclient.script_check(results, name)
    return value
