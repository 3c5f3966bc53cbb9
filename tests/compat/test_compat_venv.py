"""The old client's venv: the pinned versions are what is installed, and the runner reports failures
with the script's stderr."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from oldclient import OLD_CLIENT_REQUIREMENTS, cache_root, run_old_client

pytestmark = pytest.mark.compat


def _canonical(req: str) -> str:
    name, _, version = req.partition("==")
    return f"{name.lower().replace('_', '-')}=={version}"


def test_venv_holds_exactly_the_pins(old_python: Path) -> None:
    assert old_python.is_relative_to(cache_root())
    freeze = subprocess.run(
        [
            str(old_python),
            "-m",
            "pip",
            "freeze",
            "--all",
            "--exclude",
            "pip",
            "--exclude",
            "setuptools",
            "--exclude",
            "wheel",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    assert sorted(map(_canonical, freeze)) == sorted(map(_canonical, OLD_CLIENT_REQUIREMENTS))


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
