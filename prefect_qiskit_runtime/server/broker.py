"""In-process publish/subscribe of job events, so that waiters learn at once instead of polling.

Two events exist per job: a new interim message (``seq``, ``data``) and "the job is final". The
store stays the source of truth; a subscriber subscribes first, then reads what is stored, then
follows the live events, so it never misses one. Events of jobs running in another service instance
reach it through the :mod:`.relay` when the database is PostgreSQL; subscribers also re-read the
store now and then (see ``usecases/jobs.py`` and ``usecases/stream.py``), which is all that
happens on a SQLite database shared by several instances.

All methods may be called from any thread; subscribers live on the service's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEvent:
    """One event of a job: ``kind`` is ``"message"`` (with ``seq`` and ``data``) or ``"final"``
    (with ``status``, and the stored job itself when the publisher has it, so that waiters need
    not read it again; treat it as read-only)."""

    kind: str
    seq: int = 0
    data: str = ""
    status: str = ""
    job: Any = None


class Subscription:
    """A subscriber's queue of events for one job; use as a context manager to unsubscribe."""

    def __init__(self, broker: Broker, job_id: str) -> None:
        self.broker = broker
        self.job_id = job_id
        self.queue: asyncio.Queue[JobEvent] = asyncio.Queue()

    async def get(self, timeout: float | None = None) -> JobEvent | None:
        """Wait for the next event.

        Args:
            timeout: Seconds to wait; ``None`` waits for ever.

        Returns:
            The event, or ``None`` when the timeout passed first.
        """
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self.broker._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Broker:
    """Fan-out of job events to the subscribers on one event loop.

    Args:
        loop: The service's event loop; defaults to the running loop at the first subscription.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._lock = threading.Lock()
        #: Also told of every event published here (the relay to the other replicas), if set.
        self.relay: Callable[[str, JobEvent], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver events on ``loop`` from now on."""
        self._loop = loop

    def subscribe(self, job_id: str) -> Subscription:
        """Start receiving events of ``job_id`` (call on the event loop)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        sub = Subscription(self, job_id)
        with self._lock:
            self._subs[job_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.job_id]

    def subscriber_count(self, job_id: str | None = None) -> int:
        """How many subscriptions exist (for one job, or in all)."""
        with self._lock:
            if job_id is not None:
                return len(self._subs.get(job_id, ()))
            return sum(len(s) for s in self._subs.values())

    def publish_message(self, job_id: str, seq: int, data: str) -> None:
        """Announce the stored message ``seq`` of ``job_id``."""
        self._publish(job_id, JobEvent("message", seq=seq, data=data))

    def publish_final(self, job_id: str, status: str, job: Any = None) -> None:
        """Announce that ``job_id`` reached a final status (or was deleted).

        Args:
            job_id: The job.
            status: Its final status, or ``"DELETED"``.
            job: The job as stored with that status, if the publisher has it.
        """
        self._publish(job_id, JobEvent("final", status=status, job=job))

    def _publish(self, job_id: str, event: JobEvent) -> None:
        relay = self.relay
        if relay is not None:
            relay(job_id, event)
        self.deliver(job_id, event)

    def deliver(self, job_id: str, event: JobEvent) -> None:
        """Hand ``event`` to this instance's subscribers of ``job_id`` only (not to the relay).

        Args:
            job_id: The job.
            event: The event (from the relay: another instance's, without data).
        """
        with self._lock:
            subs = list(self._subs.get(job_id, ()))
        if not subs or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for sub in subs:
            if running is self._loop:
                sub.queue.put_nowait(event)
            elif not self._loop.is_closed():
                self._loop.call_soon_threadsafe(sub.queue.put_nowait, event)


__all__ = ["Broker", "JobEvent", "Subscription"]
