"""Recording what an executor reports, durably: outcome mapping and retries until stored.

A job's outcome exists only in the service's memory until the store has it. When the store cannot
take it (SQLite locked beyond its busy timeout, the disk full, a database connection lost), giving
up would leave the job RUNNING for ever; :func:`until_stored` keeps the write pending and retries
it with capped exponential backoff until it succeeds or the service stops (at the next start, the
job is then failed as ``SERVICE_RESTARTED``, retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server.executors.base import Outcome

logger = logging.getLogger("prefect_qiskit_runtime.server.scheduler")

T = TypeVar("T")

#: First and longest pause between attempts to write to a store that refuses writes.
RETRY_FIRST_SECONDS = 0.1
RETRY_MAX_SECONDS = 5.0


async def until_stored(write: Callable[[], T], what: str, stopping: Callable[[], bool]) -> T:
    """Run ``write`` in a worker thread until the store accepts it.

    Args:
        write: The store call (blocking).
        what: What it does, for the log ("record the end of job 1a2b").
        stopping: Whether the service is shutting down (then the last error is raised).

    Returns:
        What ``write`` returned.

    Raises:
        OperationalError: The store still refused when the service began to stop.
    """
    pause = RETRY_FIRST_SECONDS
    attempts = 0
    while True:
        try:
            result = await asyncio.to_thread(write)
        except OperationalError as exc:
            attempts += 1
            if stopping():
                raise
            logger.warning(
                "Could not %s (attempt %d: %s); retrying in %.1fs",
                what,
                attempts,
                exc.orig if exc.orig is not None else exc,
                pause,
            )
            await asyncio.sleep(pause * (1 + random.random() / 5))
            pause = min(RETRY_MAX_SECONDS, pause * 2)
            continue
        if attempts:
            logger.info("%s succeeded after %d failed attempts", what.capitalize(), attempts)
        return result


def map_outcome(
    outcome: Outcome,
) -> tuple[JobState, ReasonCode | None, str | None, str | None]:
    """The final status, reason code, result and error text an executor's outcome stands for."""
    if outcome.status == "COMPLETED":
        return JobState.COMPLETED, None, outcome.result or "null", None
    if outcome.status == "FAILED":
        reason = _reason_from_details(outcome) or ReasonCode.PROGRAM_ERROR
        return JobState.FAILED, reason, None, outcome.error or "The program failed."
    if outcome.status == "CANCELLED":
        return JobState.CANCELLED, ReasonCode.CANCELLED_BY_USER, None, None
    reason = _reason_from_details(outcome) or ReasonCode.WORKER_LOST
    error = outcome.error or "The job's worker process ended without reporting a result."
    if reason is ReasonCode.WORKER_LOST and "WORKER_LOST" not in error:
        error = f"{error}\n(WORKER_LOST: the job may succeed if submitted again.)"
    return JobState.FAILED, reason, None, error


def _reason_from_details(outcome: Outcome) -> ReasonCode | None:
    value = outcome.details.get("reason_code")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return ReasonCode(value)
    return None
