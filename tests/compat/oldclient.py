"""Build (once) and drive the real ``qiskit-ibmq-provider==0.20.2`` client in its own venv.

The old client needs ``qiskit-terra`` 0.46, which cannot share an environment with qiskit 2.x, so it
lives in a separate virtual environment that is built once per machine and reused across test runs.
The venv is keyed by the pinned requirement list: changing a pin builds a new one beside the old.

This module is imported by ``tests/compat/conftest.py`` and, by file path, by other areas::

    import importlib.util, pathlib
    spec = importlib.util.spec_from_file_location(
        "oldclient", pathlib.Path("tests/compat/oldclient.py")
    )
    oldclient = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oldclient)
    python = oldclient.ensure_old_client_venv()

It imports nothing from the project and nothing outside the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "OLD_CLIENT_REQUIREMENTS",
    "OldClientUnavailable",
    "ScriptRunner",
    "cache_root",
    "canonical_requirement",
    "ensure_old_client_venv",
    "ensure_venv",
    "installed_distributions",
    "run_old_client",
    "script_check",
]

#: Every distribution of the old client's environment, pinned, so that the venv is the same on every
#: machine. This is what ``pip install qiskit-ibmq-provider==0.20.2 qiskit-terra==0.46.3`` resolved
#: to on Python 3.11 (numpy < 1.24 comes from the provider's own cap).
#:
#: websocket-client: the provider only asks for ``>=1.5.1``, so a fresh install gets 1.9.x. From
#: 1.9.0 on, websocket-client reports every server close, even a clean 1000, as an error; the
#: provider then reconnects 5 more times over ~15.5 s (spec §5). We pin the version a real user
#: gets today (1.9.2), so the suite exercises that reconnect path: the service must answer each
#: reconnect with ACK + close 1000 and never deliver an interim result twice.
OLD_CLIENT_REQUIREMENTS: tuple[str, ...] = (
    "qiskit-ibmq-provider==0.20.2",
    "qiskit-terra==0.46.3",
    "websocket-client==1.9.2",
    "websockets==17.4",
    "numpy==1.23.5",
    "scipy==1.15.3",
    "rustworkx==0.18.1",
    "sympy==1.14.0",
    "mpmath==1.3.0",
    "symengine==0.15.0",
    "dill==0.4.1",
    "ply==3.11",
    "psutil==7.2.2",
    "stevedore==5.10.0",
    "python-dateutil==4.0.0",
    "requests==2.34.2",
    "requests-ntlm==1.1.0",
    "ntlm-auth==1.5.0",
    "urllib3==2.8.0",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "idna==3.20",
    "cryptography==50.0.2",
    "cffi==2.1.1",
    "pycparser==3.12",
    "tzdata==2026.6",
)

#: A fixture-provided function: run ``old_scripts/<name>.py`` in the old venv, return its checks.
ScriptRunner = Callable[[str], dict[str, Any]]

#: The old client installs and imports on this Python only.
OLD_CLIENT_PYTHON = (3, 11)

_IMPORT_CHECK = (
    "import json, qiskit, websocket; "
    "from qiskit.providers.ibmq import IBMQ, RunnerResult, __version__; "
    "print(json.dumps({'provider': __version__, 'terra': qiskit.__version__, "
    "'websocket_client': websocket.__version__}))"
)

# Environment variables of the calling interpreter that would leak into the old venv's interpreter
# and make it import the wrong qiskit (or none).
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")


class OldClientUnavailable(RuntimeError):
    """No Python 3.11 interpreter exists to build the old client's venv with."""


def cache_root() -> Path:
    """Return the directory that holds the cached venvs of the old client.

    Returns:
        ``$XDG_CACHE_HOME/prefect-qiskit-runtime/oldclient-0.20.2`` (``~/.cache`` when the variable
        is unset or empty).
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prefect-qiskit-runtime" / "oldclient-0.20.2"


def _requirements_key(requirements: Sequence[str]) -> str:
    """A short, order-independent digest of the requirement list and the Python version."""
    text = (
        "\n".join(sorted(requirements)) + f"\npython{OLD_CLIENT_PYTHON[0]}.{OLD_CLIENT_PYTHON[1]}"
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _find_base_python() -> str:
    """Find a Python 3.11 interpreter to create the venv from."""
    if sys.version_info[:2] == OLD_CLIENT_PYTHON:
        # A venv's interpreter works as a base too, but the real one avoids nesting.
        return getattr(sys, "_base_executable", None) or sys.executable
    name = f"python{OLD_CLIENT_PYTHON[0]}.{OLD_CLIENT_PYTHON[1]}"
    found = shutil.which(name)
    if found is None:
        raise OldClientUnavailable(
            f"qiskit-ibmq-provider 0.20.2 needs Python {name[6:]}, and no {name} is on PATH"
        )
    return found


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The calling environment without variables that would redirect the old interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released when the process dies, too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_checked(args: Sequence[str], what: str, timeout: float) -> str:
    """Run a build step; raise with its whole output when it fails."""
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed with exit code {proc.returncode}\n"
            f"command: {' '.join(args)}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc.stdout


def ensure_old_client_venv(
    requirements: Sequence[str] = OLD_CLIENT_REQUIREMENTS, *, timeout: float = 900
) -> Path:
    """Return the Python of a venv holding ``qiskit-ibmq-provider==0.20.2``, building it once.

    The venv lives under :func:`cache_root`; :func:`ensure_venv` builds it (and says what it
    raises).

    Args:
        requirements: The pinned requirement list to install.
        timeout: Seconds allowed for each build step (venv creation, ``pip install``).

    Example:
        >>> python = ensure_old_client_venv()
        >>> python.name
        'python'
    """
    return ensure_venv(cache_root(), requirements, _IMPORT_CHECK, timeout=timeout)


def ensure_venv(
    root: Path, requirements: Sequence[str], import_check: str, *, timeout: float = 900
) -> Path:
    """Return the Python of a cached venv holding exactly ``requirements``, building it once.

    The venv is ``root/venv-<digest of the requirements and the Python version>``. A file lock
    makes concurrent callers (two pytest processes, xdist workers) wait for one build; a build that
    did not finish (killed, failed) leaves no ``READY`` marker and is redone. ``READY`` keeps the
    output of ``import_check``, the build's last step.

    Args:
        root: The cache folder of this kind of venv.
        requirements: The pinned requirement list to install.
        import_check: Python source run in the new venv to prove it works; it prints one line.
        timeout: Seconds allowed for each build step (venv creation, ``pip install``).

    Returns:
        The path of the venv's ``python`` executable.

    Raises:
        OldClientUnavailable: No Python 3.11 interpreter is available.
        RuntimeError: Creating the venv or installing the requirements failed (output included).
    """
    venv_dir = root / f"venv-{_requirements_key(requirements)}"
    python = venv_dir / "bin" / "python"
    ready = venv_dir / "READY"
    if ready.is_file() and python.exists():
        return python
    base_python = _find_base_python()
    with _file_lock(root / f"{venv_dir.name}.lock"):
        if ready.is_file() and python.exists():
            return python  # another process built it while we waited for the lock
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        _run_checked([base_python, "-m", "venv", str(venv_dir)], "creating the venv", timeout)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req_file:
            req_file.write("\n".join(requirements) + "\n")
        try:
            _run_checked(
                [str(python), "-m", "pip", "install", "--no-input", "-r", req_file.name],
                f"pip install into {root.name}",
                timeout,
            )
        finally:
            os.unlink(req_file.name)
        versions = _run_checked([str(python), "-c", import_check], "importing the client", 120)
        (venv_dir / "requirements.txt").write_text("\n".join(requirements) + "\n")
        # Written last: its presence means every step above succeeded.
        ready.write_text(versions)
    return python


def installed_distributions(python: Path) -> list[str]:
    """Every distribution installed in a venv (but pip, setuptools and wheel), canonicalised.

    Args:
        python: The venv's interpreter.

    Returns:
        Sorted ``name==version`` lines, names lower case with ``-`` for ``_``.
    """
    excluded = ["--exclude", "pip", "--exclude", "setuptools", "--exclude", "wheel"]
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--all", *excluded],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=_clean_env(),
    ).stdout.split()
    return sorted(canonical_requirement(line) for line in freeze)


def canonical_requirement(requirement: str) -> str:
    """``Name_X==1.0`` as ``name-x==1.0``, the form pip compares names in."""
    name, _, version = requirement.partition("==")
    return f"{name.lower().replace('_', '-')}=={version}"


def run_old_client(
    script: str,
    env: Mapping[str, str] | None = None,
    *,
    python: Path | None = None,
    pythonpath: Sequence[Path] = (),
    timeout: float = 300,
) -> dict[str, Any]:
    """Run ``script`` with the old client's Python and return the JSON on its last stdout line.

    The script runs from a file in a fresh temporary directory (so nothing in the current directory
    shadows ``qiskit``), with the calling environment minus ``PYTHONPATH``/``VIRTUAL_ENV``, plus
    ``env``.

    Args:
        script: Python source to run; it must print one JSON object as its last stdout line.
        env: Extra environment variables (service URL, tokens, ``REQUESTS_CA_BUNDLE``…).
        python: The interpreter; :func:`ensure_old_client_venv` when omitted.
        pythonpath: Directories to put on the script's ``PYTHONPATH`` (shared helper modules).
        timeout: Seconds before the script is killed.

    Returns:
        The decoded JSON object.

    Raises:
        AssertionError: The script exited non-zero, timed out, or its last line is not a JSON
            object; the message carries the script's stderr and the tail of its stdout.
    """
    interpreter = python or ensure_old_client_venv()
    extra = dict(env or {})
    if pythonpath:
        extra["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    with tempfile.TemporaryDirectory(prefix="oldclient-") as workdir:
        script_path = Path(workdir) / "old_client_script.py"
        script_path.write_text(script)
        try:
            proc = subprocess.run(
                [str(interpreter), str(script_path)],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=workdir,
                env=_clean_env(extra),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"old-client script timed out after {timeout}s\n"
                f"--- stdout ---\n{_text(exc.stdout)[-4000:]}\n"
                f"--- stderr ---\n{_text(exc.stderr)[-8000:]}"
            ) from None
    lines = proc.stdout.strip().splitlines()
    detail = f"--- stdout (tail) ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
    if proc.returncode != 0:
        raise AssertionError(f"old-client script exited with {proc.returncode}\n{detail}")
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        raise AssertionError(f"old-client script printed no JSON object last\n{detail}")
    result.setdefault("_stderr", proc.stderr)
    return result


def script_check(results: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Return check ``name`` of a script's results; fail with the script's traceback if it raised.

    Scripts record each check as ``{name: {...}}`` and a failed one as
    ``{name: {"error": ..., "traceback": ...}}`` (see ``old_scripts/oc_common.py``).

    Args:
        results: What :func:`run_old_client` returned.
        name: The check's key.

    Returns:
        The check's recorded values.

    Raises:
        AssertionError: The check is missing or raised inside the old client.
    """
    assert name in results, (
        f"check {name!r} never ran; script stderr:\n{str(results.get('_stderr', ''))[-6000:]}"
    )
    value = results[name]
    assert isinstance(value, dict), f"check {name!r} is not a dict: {value!r}"
    assert "error" not in value, f"{value['error']}\n{value.get('traceback', '')}"
    return value


def _text(data: str | bytes | None) -> str:
    """Decode what ``TimeoutExpired`` captured (bytes even in text mode)."""
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
