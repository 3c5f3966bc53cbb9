"""The old client's venv: the pinned versions are what is installed, and the runner reports failures
with the script's stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from oldclient import (
    OLD_CLIENT_REQUIREMENTS,
    cache_root,
    canonical_requirement,
    installed_distributions,
    run_old_client,
)

pytestmark = pytest.mark.compat


def test_venv_holds_exactly_the_pins(old_python: Path) -> None:
    assert old_python.is_relative_to(cache_root())
    expected = sorted(map(canonical_requirement, OLD_CLIENT_REQUIREMENTS))
    assert installed_distributions(old_python) == expected


def test_runner_returns_last_json_line(old_python: Path) -> None:
    script = (
        "import json, qiskit, websocket\n"
        "from qiskit.providers.ibmq import __version__\n"
        "print('noise before the result')\n"
        "print(json.dumps({'provider': __version__, 'terra': qiskit.__version__,"
        " 'ws': websocket.__version__}))\n"
    )
    out = run_old_client(script, python=old_python)
    assert (out["provider"], out["terra"], out["ws"]) == ("0.20.2", "0.46.3", "1.9.2")
    ready = json.loads((old_python.parent.parent / "READY").read_text())
    assert ready["provider"] == "0.20.2"


def test_runner_failure_carries_stderr(old_python: Path) -> None:
    with pytest.raises(AssertionError, match="exited with 3") as info:
        run_old_client(
            "import sys\nprint('marker-err', file=sys.stderr)\nsys.exit(3)\n", python=old_python
        )
    assert "marker-err" in str(info.value)
    with pytest.raises(AssertionError, match="no JSON object"):
        run_old_client("print('not json')\n", python=old_python)
