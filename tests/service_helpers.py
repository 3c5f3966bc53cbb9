"""Start and stop a real runtime service (uvicorn on 127.0.0.1) through the package's own CLI.

Imported by ``tests/conftest.py`` and by test modules that need a service of their own
(``from service_helpers import start_service, stop_service``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import requests

from prefect_qiskit_runtime.client.embedded import launch_service


@dataclass
class RunningService:
    """A service process started for the tests."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def add_user(self, name: str, can_upload: bool = True) -> str:
        """Create a user with the CLI and return its token (the CLI's last output line)."""
        if name in self.tokens:
            return self.tokens[name]
        token = add_user(self.home, name, can_upload)
        self.tokens[name] = token
        return token

    def headers(self, name: str = "alice") -> dict[str, str]:
        """Headers that authenticate as ``name``."""
        return {"X-Access-Token": self.add_user(name)}

    @property
    def runtime(self) -> str:
        """Base URL of the runtime API."""
        return self.url + "/runtime"


def cli(
    *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``prefect-qiskit-runtime ARGS`` in a fresh interpreter (``env`` added to this one's)."""
    return subprocess.run(
        [sys.executable, "-m", "prefect_qiskit_runtime.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        env={**os.environ, **env} if env else None,
    )


def add_user(home: Path, name: str, can_upload: bool = True) -> str:
    """Create a user in the service home ``home`` and return its token."""
    args = ["users", "add", name, "--home", str(home)]
    if can_upload:
        args.append("--can-upload")
    out = cli(*args).stdout.strip().splitlines()
    return out[-1].strip()


def start_service(
    home: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 90,
    log_path: Path | None = None,
) -> RunningService:
    """Start ``server start`` on a free port and wait until ``/health`` answers.

    Args:
        home: The service's home directory.
        extra: More CLI arguments (``--workers 2``, ``--tls-self-signed``…).
        env: Extra environment variables for the service process.
        timeout: Seconds to wait for readiness.
        log_path: Where its output goes (default ``home/service.log``).

    Returns:
        The running service; stop it with :func:`stop_service`.
    """
    home.mkdir(parents=True, exist_ok=True)
    log_path = log_path or home / "service.log"
    proc, info = launch_service(
        home,
        *extra,
        ready_file=home / "ready.json",
        log_path=log_path,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    service = RunningService(url=info["url"], home=home, process=proc, log_path=log_path)
    verify: bool | str = str(home / "tls" / "cert.pem") if info["url"].startswith("https") else True
    requests.get(service.url + "/health", timeout=10, verify=verify).raise_for_status()
    return service


def stop_service(service: RunningService, sig: int = signal.SIGTERM) -> int:
    """Stop the service process with ``sig`` and return its exit code."""
    if service.process.poll() is None:
        service.process.send_signal(sig)
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()
    return service.process.returncode
