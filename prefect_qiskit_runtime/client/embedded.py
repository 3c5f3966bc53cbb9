"""The embedded service: one local runtime service per data directory, started on demand.

The data directory is ``PREFECT_QISKIT_RUNTIME_HOME`` or the user's data directory
(``platformdirs.user_data_dir("prefect-qiskit-runtime", appauthor=False)``). In it:

- ``embedded.lock``: an ``flock`` held while one process checks for, or starts, the service, so that
  concurrent processes share one instance;
- ``embedded.json`` (mode 0600): ``{"url", "pid", "home", "started", "version"}`` of the running
  service, written by the service itself (however it was started) and removed when it stops;
- ``token`` (mode 0600): the local user's API token, created once;
- ``embedded.log``: the service's output.

The service listens on 127.0.0.1 on a random port and exits by itself after 15 idle minutes; the
next client starts a new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
import psutil
import requests

from prefect_qiskit_runtime.core.exceptions import EmbeddedServiceError

logger = logging.getLogger(__name__)

#: The file in a service's home naming the running service (``url``, ``pid``, ``started``...),
#: written by the service itself once it accepts connections and removed when it stops.
SERVICE_RECORD = "embedded.json"

HOME_ENV = "PREFECT_QISKIT_RUNTIME_HOME"
#: Seconds without requests or running jobs after which the embedded service exits.
IDLE_TIMEOUT = 900
#: Seconds to wait for a freshly started service to become ready (it imports Qiskit).
START_TIMEOUT = 120.0
LOCAL_USER = "local"

# Keeps the launched services' Popen objects alive: a collected Popen of a still running child
# warns, and the service is meant to outlive nothing but its idle timeout.
_launched: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class EmbeddedService:
    """Where the embedded service listens and how to authenticate.

    Attributes:
        url: The service root, ``http://127.0.0.1:PORT``.
        token: The local user's API token.
        pid: The service's process id.
        home: Its data directory.
        started: Whether this call started it (``False`` when an existing one was reused).
    """

    url: str
    token: str
    pid: int
    home: Path
    started: bool = False

    def __repr__(self) -> str:
        return f"EmbeddedService(url={self.url!r}, pid={self.pid}, home={str(self.home)!r})"


def home_dir(home: Path | str | None = None) -> Path:
    """The embedded service's data directory (created with mode 0700 if missing).

    Args:
        home: An explicit directory; otherwise ``PREFECT_QISKIT_RUNTIME_HOME`` or the user data dir.

    Returns:
        The directory.
    """
    chosen = (
        home
        or os.environ.get(HOME_ENV)
        or platformdirs.user_data_dir("prefect-qiskit-runtime", appauthor=False)
    )
    path = Path(chosen).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    fd = os.open(home / "embedded.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _read_record(home: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((home / SERVICE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "url" not in record or "pid" not in record:
        return None
    return record


def _health(url: str, timeout: float = 2.0, verify: bool | str = True) -> dict[str, Any] | None:
    try:
        session = requests.Session()
        session.trust_env = False  # a configured internet proxy must not see local traffic
        with session:
            response = session.get(url + "/health", timeout=timeout, verify=verify)
        if response.status_code != 200:
            return None
        body = response.json()
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("status") == "ok" else None


def _our_process(pid: int, home: Path) -> psutil.Process | None:
    """The process ``pid`` if it is a runtime service serving ``home`` (pids get reused).

    A service may have been started with ``--home`` relative to another directory, so its home is
    compared after resolving it against the process's own working directory.
    """
    try:
        proc = psutil.Process(pid)
        cmdline = proc.cmdline()
        cwd = Path(proc.cwd())
    except (psutil.Error, OSError):
        return None
    joined = " ".join(cmdline)
    if "prefect_qiskit_runtime" not in joined and "prefect-qiskit-runtime" not in joined:
        return None
    wanted = home.resolve()
    for flag, value in itertools.pairwise(cmdline):
        if flag == "--home" and (cwd / Path(value).expanduser()).resolve() == wanted:
            return proc
    return None


def _local_token(home: Path) -> str:
    token_file = home / "token"
    if token_file.exists():
        return token_file.read_text(encoding="utf-8").strip()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "prefect_qiskit_runtime.cli",
            "users",
            "add",
            LOCAL_USER,
            "--can-upload",
            "--home",
            str(home),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise EmbeddedServiceError(
            f"Could not create the local user in {home}: {result.stderr.strip()[-2000:]}"
        )
    token = lines[-1].strip()
    _write_private(token_file, token + "\n")
    return token


def launch_service(
    home: Path,
    *extra_args: str,
    ready_file: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    detach: bool = False,
    timeout: float = START_TIMEOUT,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start ``prefect-qiskit-runtime server start`` on a free port of 127.0.0.1 and wait for it.

    The one way this package (and its tests and benchmarks) starts a service process: in this
    interpreter, output appended to ``log_path``, ready once it has written ``ready_file``.

    Args:
        home: The service's home directory.
        extra_args: More ``server start`` arguments (``--idle-timeout 900``, ``--workers 2``...).
        ready_file: Where the service writes ``{"url", "pid"}`` once it accepts connections (an
            old file there is removed first).
        log_path: The service's stdout and stderr (appended).
        env: The service's environment (default: this process's).
        detach: Start it in a session of its own, so that it outlives this process and its
            terminal's signals (the embedded service does).
        timeout: Seconds to wait for the ready file.

    Returns:
        The process and the ready file's contents (``url``, ``pid``).

    Raises:
        EmbeddedServiceError: If the service exits or is not ready in time (it is killed then);
            the message ends with the tail of its log.
    """
    ready_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "prefect_qiskit_runtime.cli", "server", "start"]
    command += ["--host", "127.0.0.1", "--port", "0", "--home", str(home)]
    command += ["--ready-file", str(ready_file), *extra_args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=detach,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        if ready_file.exists():
            try:
                info: dict[str, Any] = json.loads(ready_file.read_text(encoding="utf-8"))
                if "url" in info:
                    info["url"] = str(info["url"]).rstrip("/")
                    return proc, info
            except (OSError, ValueError):
                pass  # written but not complete yet
        if proc.poll() is not None:
            raise EmbeddedServiceError(
                f"The runtime service exited with code {proc.returncode}; "
                f"see {log_path}:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise EmbeddedServiceError(
                f"The runtime service was not ready after {timeout:.0f}s; "
                f"see {log_path}:\n{_tail(log_path)}"
            )
        # The service writes the ready file once; there is nothing to block on but the file.
        time.sleep(0.05)


def _launch(home: Path, timeout: float) -> tuple[str, int]:
    proc, info = launch_service(
        home,
        "--idle-timeout",
        str(IDLE_TIMEOUT),
        ready_file=home / "embedded.ready",
        log_path=home / "embedded.log",
        detach=True,
        timeout=timeout,
    )
    _launched.append(proc)
    return str(info["url"]), int(info.get("pid") or proc.pid)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def ensure(home: Path | str | None = None, *, timeout: float = START_TIMEOUT) -> EmbeddedService:
    """Return the running embedded service of ``home``, starting it if there is none.

    Safe to call from many processes at once: a file lock makes one of them start the service and
    the others reuse it.

    Args:
        home: The data directory (default: :func:`home_dir`).
        timeout: Seconds to wait for a new service to become ready.

    Returns:
        The service's URL, token and pid.

    Raises:
        EmbeddedServiceError: If the service cannot be started.

    Example:
        >>> info = ensure()  # doctest: +SKIP
        >>> info.url  # doctest: +SKIP
        'http://127.0.0.1:53817'
    """
    path = home_dir(home)
    for launched in list(_launched):
        if launched.poll() is not None:  # reap a service that has exited (idle timeout)
            _launched.remove(launched)
    with _locked(path):
        record = _read_record(path)
        if record is not None:
            url, pid = str(record["url"]), int(record["pid"])
            if _health(url) is not None:
                return EmbeddedService(url, _local_token(path), pid, path)
            stale = _our_process(pid, path)
            if stale is not None and _health(url, timeout=10.0) is not None:
                return EmbeddedService(url, _local_token(path), pid, path)
            if stale is not None:
                logger.warning("Embedded service %d does not answer; restarting it", pid)
                _terminate(stale)
            (path / SERVICE_RECORD).unlink(missing_ok=True)
        token = _local_token(path)
        # The service writes its record in the home before its ready file, so the next caller
        # finds it.
        url, pid = _launch(path, timeout)
        if _health(url, timeout=10.0) is None:
            raise EmbeddedServiceError(f"The embedded service at {url} does not answer /health")
        logger.info("Started the embedded runtime service at %s (pid %d)", url, pid)
        return EmbeddedService(url, token, pid, path, started=True)


def _terminate(proc: psutil.Process, timeout: float = 30.0) -> None:
    try:
        proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs([proc], timeout=timeout)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=5)
    except psutil.Error:
        pass


def stop(home: Path | None = None) -> bool:
    """Stop the embedded service of ``home``.

    Args:
        home: The data directory (default: :func:`home_dir`).

    Returns:
        True if a running service was stopped.
    """
    path = home_dir(home)
    with _locked(path):
        record = _read_record(path)
        if record is None:
            return False
        proc = _our_process(int(record["pid"]), path)
        (path / SERVICE_RECORD).unlink(missing_ok=True)
        if proc is None:
            return False
        _terminate(proc)
        for launched in list(_launched):
            if launched.pid == proc.pid:
                launched.wait(timeout=5)
                _launched.remove(launched)
        return True


def status(home: Path | None = None) -> dict[str, Any] | None:
    """Describe the embedded service of ``home`` if it is running.

    Args:
        home: The data directory (default: :func:`home_dir`).

    Returns:
        ``{"url", "pid", "home", "version", "started", "uptime_seconds"}`` of a healthy service
        (``started`` in ISO-8601 UTC), or ``None``.
    """
    path = home_dir(home)
    record = _read_record(path)
    if record is None:
        return None
    # A service started with TLS records its certificate, which is what it is trusted by.
    health = _health(str(record["url"]), verify=record.get("tls_cert") or True)
    if health is None:
        return None
    started = record.get("started")
    uptime = health.get("uptime")
    return {
        "url": str(record["url"]),
        "pid": int(record["pid"]),
        "home": str(path),
        "version": health.get("version"),
        "started": started,
        "uptime_seconds": uptime,
    }


__all__ = [
    "HOME_ENV",
    "IDLE_TIMEOUT",
    "EmbeddedService",
    "ensure",
    "home_dir",
    "launch_service",
    "status",
    "stop",
]
