"""Runtime program uploaded by the compatibility suite (runs in the service, on qiskit 2.x).

Inputs: ``iterations`` (required by the code but not by the metadata, so ``{}`` fails with KeyError
inside the job, spec §9 item 27), ``interval`` (seconds between interim results), ``sleep`` (seconds
to stay RUNNING, for cancel and ``pending`` checks) and ``tag`` (echoed in the result).
"""

import logging
import sys
import time
import warnings

logger = logging.getLogger("compat_program")


def main(backend, user_messenger, **kwargs):
    """Publish ``{"iteration": i}`` for each iteration, write log lines, return a mixed dict."""
    iterations = kwargs["iterations"]
    interval = float(kwargs.get("interval") or 0)
    print("compat-print-line")
    print("compat-stderr-line", file=sys.stderr)
    warnings.warn("compat-warning-line", stacklevel=1)
    logger.info("compat-info-line")
    logger.error("compat-error-line")
    for i in range(iterations):
        user_messenger.publish({"iteration": i})
        if interval:
            time.sleep(interval)
    deadline = time.monotonic() + float(kwargs.get("sleep") or 0)
    while time.monotonic() < deadline:
        time.sleep(0.05)
    user_messenger.publish(
        {
            "iterations": iterations,
            "tag": kwargs.get("tag"),
            "float": 0.25,
            "complex": 1 + 2j,
            "backend": backend.name if isinstance(backend.name, str) else backend.name(),
        },
        final=True,
    )
