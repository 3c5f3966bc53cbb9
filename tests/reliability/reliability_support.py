"""Programs and small helpers shared by the reliability tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: Publishes ``count`` interim results ``{"x", "i"}`` (``pause`` seconds apart), returns ``2x``.
PUBLISH_THEN_DOUBLE = """
import time

def main(backend, user_messenger, x, count=3, pause=0.0):
    for i in range(count):
        user_messenger.publish({"x": x, "i": i})
        if pause:
            time.sleep(pause)
    return 2 * x
"""

#: Runs until a file named ``go`` appears in its working directory, then returns ``x``.
WAIT_FOR_GO = """
import os, time

def main(backend, user_messenger, x=0):
    user_messenger.publish({"waiting": os.getcwd()})
    while not os.path.exists("go"):
        time.sleep(0.01)
    return x
"""

#: Sleeps ``seconds``, then returns ``x``.
SLEEP_THEN_RETURN = """
import time

def main(backend, user_messenger, x=0, seconds=1.0):
    time.sleep(seconds)
    return x
"""

BACKEND = {"backend_name": "aer_simulator"}


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` every 20 ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)  # polling a condition with a deadline, not waiting out a race
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
