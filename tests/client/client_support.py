"""Program sources and small helpers shared by the client tests (imported as ``client_support``)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

BACKEND = {"backend_name": "aer_simulator"}

DOUBLER = """
def main(backend, user_messenger, **kwargs):
    user_messenger.publish(kwargs["x"] * 2, final=True)
"""

# Publishes n interim results {"i": i}; after publishing gate_at it waits for the file `gate`.
STREAMER = """
import os
import time

def main(backend, user_messenger, **kwargs):
    n = kwargs["n"]
    gate = kwargs.get("gate")
    gate_at = kwargs.get("gate_at", -1)
    for i in range(n):
        user_messenger.publish({"i": i})
        if gate and i == gate_at:
            deadline = time.monotonic() + 60
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
    user_messenger.publish("streamed", final=True)
"""

FAILER = """
def main(backend, user_messenger, **kwargs):
    print("about to fail")
    return kwargs["no_such_input"]
"""

# Runs until the file `gate` exists (or 60 s pass), so a test can act while it is RUNNING.
WAITER = """
import os
import time

def main(backend, user_messenger, **kwargs):
    user_messenger.publish("started")
    deadline = time.monotonic() + 60
    while not os.path.exists(kwargs["gate"]) and time.monotonic() < deadline:
        time.sleep(0.01)
    user_messenger.publish("released", final=True)
"""


def unique(prefix: str) -> str:
    """A program name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


Uploader = Callable[..., str]


def started_callback() -> tuple[threading.Event, Callable[[str, Any], None]]:
    """An event set when a WAITER job publishes ``"started"``, and the callback that sets it."""
    started = threading.Event()

    def callback(job_id: str, message: Any) -> None:
        if message == "started":
            started.set()

    return started, callback
