"""Waiting for a job: one deadline, long-poll windows, and patience with an unreachable service.

A wait (``result()``, ``wait_for_final_state()``) is made of long-polls, each at most
:data:`LONG_POLL_SECONDS`. Each request already retries transient failures itself (the transport's
:class:`~prefect_qiskit_runtime.client.transport.RetryPolicy`); a wait goes further, because a job
outlives any outage it might see: when a request still ends in
:class:`~prefect_qiskit_runtime.core.exceptions.RuntimeServiceUnavailable`, the wait backs off (with
jitter) and asks again, until the caller's timeout. Only then does it raise. Without a timeout, it
gives up once the service has been unreachable for :data:`UNREACHABLE_PATIENCE_SECONDS` in a row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from prefect_qiskit_runtime.client.transport import RetryPolicy
from prefect_qiskit_runtime.core.exceptions import RuntimeJobTimeoutError, RuntimeServiceUnavailable

logger = logging.getLogger(__name__)

#: Longest single long-poll (the service allows 60; shorter keeps idle proxies from cutting it).
LONG_POLL_SECONDS = 30.0

#: Without a caller's timeout, how long a wait tolerates an unreachable service before it raises.
UNREACHABLE_PATIENCE_SECONDS = 300.0

T = TypeVar("T")


class Deadline:
    """The end of a wait, on the monotonic clock.

    Args:
        timeout: Seconds from now; ``None`` for a wait without end.
        what: What is waited for, for the timeout message ("job 1a2b").

    Example:
        >>> Deadline(None).remaining() is None
        True
    """

    def __init__(self, timeout: float | None, what: str = "the job") -> None:
        self.timeout = timeout
        self.what = what
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (at least 0), or ``None`` without a timeout."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def windows(self) -> Iterator[float]:
        """The length of each long-poll, until the deadline.

        Raises:
            RuntimeJobTimeoutError: When asked for a long-poll after the time is up.
        """
        while True:
            remaining = self.remaining()
            if remaining is None:
                yield LONG_POLL_SECONDS
                continue
            if remaining <= 0:
                raise RuntimeJobTimeoutError(
                    f"Timed out waiting for {self.what} after {self.timeout} seconds"
                )
            yield min(LONG_POLL_SECONDS, remaining)

    def patiently(self, send: Callable[[], T], policy: RetryPolicy) -> T:
        """Call ``send`` until it gets through, backing off while the service is unreachable.

        Args:
            send: One request (which retries by itself within ``policy``).
            policy: Backoff and jitter between the outer attempts.

        Returns:
            What ``send`` returned.

        Raises:
            RuntimeServiceUnavailable: The service stayed unreachable until the deadline (or for
                :data:`UNREACHABLE_PATIENCE_SECONDS` without one).
        """
        failures = 0
        first_failure = 0.0
        while True:
            try:
                return send()
            except RuntimeServiceUnavailable as exc:
                now = time.monotonic()
                failures += 1
                if failures == 1:
                    first_failure = now
                pause = policy.backoff(failures)
                remaining = self.remaining()
                if remaining is None:
                    if now - first_failure + pause > UNREACHABLE_PATIENCE_SECONDS:
                        raise
                elif pause >= remaining:
                    raise RuntimeServiceUnavailable(
                        f"{exc} (still, when the wait for {self.what} ran out after "
                        f"{self.timeout} seconds)",
                        status_code=exc.status_code,
                        error_code=exc.error_code,
                    ) from exc
                logger.info("Waiting for %s: %s; asking again in %.2fs", self.what, exc, pause)
                time.sleep(pause)
