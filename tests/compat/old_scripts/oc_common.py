# mypy: ignore-errors
"""Helpers shared by the scripts that run inside the old client's venv (qiskit-terra 0.46).

Each script records its checks in ``RESULTS`` under one key per check and prints ``RESULTS`` as JSON
on its last stdout line; pytest then asserts on each key separately, so one broken step fails one
test and the others still report. Nothing here may import the project: this runs on Python 3.11 with
``qiskit-ibmq-provider==0.20.2`` and ``qiskit-terra==0.46.3`` only.

Inputs come as JSON in the environment variable ``COMPAT_ARGS`` (service URL, tokens, paths).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=PendingDeprecationWarning)

from qiskit import IBMQ  # noqa: E402  (the filters above must come first)
from script_checks import RESULTS, check, raised  # noqa: E402, F401  (tests/client_scripts)

ARGS: dict[str, Any] = json.loads(os.environ.get("COMPAT_ARGS", "{}"))


class _ListHandler(logging.Handler):
    """Keeps the old client's own log records so checks can look for its warnings."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


LOG = _ListHandler()
_ibmq_logger = logging.getLogger("qiskit.providers.ibmq")
_ibmq_logger.addHandler(LOG)
_ibmq_logger.setLevel(logging.INFO)


def log_lines(min_level: int = logging.WARNING, contains: str = "") -> list[str]:
    """Messages the old client logged at ``min_level`` or above that contain ``contains``."""
    out = []
    for record in LOG.records:
        if record.levelno >= min_level:
            text = record.getMessage()
            if contains in text:
                out.append(text)
    return out


def connect(token: str):
    """``IBMQ.enable_account`` with nothing but the token and the service's ``/api`` URL."""
    if IBMQ.active_account() is not None:
        IBMQ.disable_account()
    return IBMQ.enable_account(token, url=ARGS["url"] + "/api")


def captured_stdout(func: Callable[[], Any]) -> str:
    """What ``func`` printed (pprint_programs prints to stdout)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        func()
    return buf.getvalue()


def wait_for_status(job, wanted, timeout: float = 60.0) -> str:
    """Poll ``job.status()`` (a real GET each time) until its name is in ``wanted``."""
    deadline = time.monotonic() + timeout
    status = job.status().name
    while status not in wanted:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job.job_id()} still {status}, wanted {wanted}")
        time.sleep(0.1)  # the old client has no long-poll; this is its own polling, faster
        status = job.status().name
    return status


def wait_streams(jobs, timeout: float = 90.0) -> list[str | None]:
    """Wait until each job's websocket thread has ended (all reconnects done).

    websocket-client >= 1.9 makes the provider reconnect 5 times after a clean close (~15.5 s), so
    "exactly once" can only be judged after the thread has finished.

    Returns:
        For each job, in order, the exception its stream thread ended with, or ``None``.
    """
    out: list[str | None] = []
    for job in jobs:
        future = job._ws_client_future  # private, but the only handle on the stream thread
        if future is None:
            out.append("never streamed")
            continue
        exc = future.exception(timeout=timeout)
        out.append(None if exc is None else repr(exc))
    return out


def finish() -> None:
    """Print the results as the last stdout line."""
    print(json.dumps(RESULTS, default=repr))
