"""The modern client's venv: it holds exactly the pinned versions, and lives in the shared cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from modernclient import MODERN_CLIENT_REQUIREMENTS, cache_root, oldclient

pytestmark = [pytest.mark.compat, pytest.mark.timeout(1500)]


def test_venv_holds_exactly_the_pins(modern_python: Path) -> None:
    assert modern_python.is_relative_to(cache_root())
    expected = sorted(map(oldclient.canonical_requirement, MODERN_CLIENT_REQUIREMENTS))
    assert oldclient.installed_distributions(modern_python) == expected


def test_client_imports_in_the_venv(modern_python: Path) -> None:
    out = oldclient.run_old_client(
        "import json, qiskit_ibm_runtime, qiskit\n"
        "print(json.dumps({'runtime': qiskit_ibm_runtime.__version__, 'q': qiskit.__version__}))\n",
        python=modern_python,
    )
    assert (out["runtime"], out["q"]) == ("0.51.0", "2.6.2")
