"""Job events between replicas on one PostgreSQL database, over ``LISTEN``/``NOTIFY``.

The :class:`~prefect_qiskit_runtime.server.broker.Broker` tells the waiters of one instance at once
when a job it runs publishes a message or ends. A client may wait on another replica (behind a load
balancer it usually does); without this relay that replica learns of the event only when its
waiters re-read the store, up to ``RECHECK_SECONDS`` later. With it:

- every event the broker publishes is also announced on the channel :data:`CHANNEL`: pending
  events are coalesced per job (the newest one wins: a waiter re-reads the store anyway) and sent
  in one ``pg_notify`` statement per batch, so a burst of messages costs one round trip;
- every instance listens on the channel and hands the events of other instances to its own
  subscribers of that job (as hints without data: a stream re-reads what is stored, a long-poll
  re-reads the job); a job this instance runs and another one cancelled is checked at once, so
  its worker stops without waiting for the next reconciliation.

The store stays the source of truth: a lost notification (the listener reconnecting, the database
restarting) only delays a waiter until its next re-read, never loses an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.engine import make_url

from prefect_qiskit_runtime.server.broker import Broker, JobEvent

logger = logging.getLogger("prefect_qiskit_runtime.server.relay")

#: The notification channel (one per database; instances of other schemas ignore unknown jobs).
CHANNEL = "pqr_job_events"
#: Seconds between two attempts to reconnect the listener or the sender.
RECONNECT_SECONDS = 1.0


def libpq_url(url: str) -> str:
    """The libpq connection URI of a SQLAlchemy ``postgresql+psycopg://`` URL (for psycopg).

    Args:
        url: The store's SQLAlchemy URL.

    Returns:
        ``postgresql://...`` with the same credentials, host, database and query (``options``).
    """
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresRelay:
    """Announces this instance's job events to the other replicas, and theirs to its broker.

    Args:
        url: The store's SQLAlchemy URL (PostgreSQL).
        broker: This instance's broker.
        instance_id: This instance (its own notifications are ignored when they come back).
        on_remote_final: Called on the event loop with the id of a job another instance ended.
    """

    def __init__(
        self,
        url: str,
        broker: Broker,
        instance_id: str,
        on_remote_final: Callable[[str], None] | None = None,
    ) -> None:
        self._conninfo = libpq_url(url)
        self.broker = broker
        self.instance_id = instance_id
        self.on_remote_final = on_remote_final
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Notifications sent and received (for the tests and the curious).
        self.sent = 0
        self.received = 0
        self._troubled: set[str] = set()

    async def start(self) -> None:
        """Start listening and sending (returns once the listener is subscribed)."""
        self._loop = asyncio.get_running_loop()
        listening = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(listening), name="relay-listen"),
            asyncio.create_task(self._send(), name="relay-send"),
        ]
        self.broker.relay = self.forward
        # A first connection that fails is retried in the background: the service still works,
        # with waiters falling back to re-reading the store.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(listening.wait(), 10)

    async def stop(self) -> None:
        """Stop both loops and close their connections."""
        self.broker.relay = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def forward(self, job_id: str, event: JobEvent) -> None:
        """Queue ``event`` of ``job_id`` for the other replicas (from any thread)."""
        note = {"i": self.instance_id, "j": job_id, "k": event.kind}
        if event.kind == "final":
            note["s"] = event.status
        with self._lock:
            if self._pending.get(job_id, {}).get("k") == "final":
                return  # a message published after the end changes nothing for a waiter
            self._pending[job_id] = note
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _send(self) -> None:
        async def send_pending(conn: Any) -> None:
            while True:
                await self._wake.wait()
                self._wake.clear()
                with self._lock:
                    notes, self._pending = list(self._pending.values()), {}
                if notes:
                    payloads = [json.dumps(note, separators=(",", ":")) for note in notes]
                    await conn.execute(
                        "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
                        (CHANNEL, payloads),
                    )
                    self.sent += len(payloads)

        await self._connected("send", send_pending)

    async def _listen(self, listening: asyncio.Event) -> None:
        async def receive(conn: Any) -> None:
            await conn.execute(f"LISTEN {CHANNEL}")
            listening.set()
            async for notify in conn.notifies():
                self._receive(notify.payload)

        await self._connected("listen", receive)

    async def _connected(self, what: str, serve: Callable[[Any], Awaitable[None]]) -> None:
        """Run ``serve`` on a connection of its own, reconnecting whenever the connection fails."""
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    if what in self._troubled:
                        self._troubled.discard(what)
                        logger.info("job event relay: can %s again", what)
                    await serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._trouble(what, exc)
                await asyncio.sleep(RECONNECT_SECONDS)

    def _trouble(self, what: str, exc: Exception) -> None:
        # Once per outage, not once per reconnection attempt: the database may be away for long.
        if what not in self._troubled:
            self._troubled.add(what)
            logger.warning(
                "job event relay: cannot %s (%s); waiters re-read the database until it is back",
                what,
                exc,
            )

    def _receive(self, payload: str) -> None:
        try:
            note = json.loads(payload)
            origin, job_id, kind = note["i"], str(note["j"]), note["k"]
        except (ValueError, KeyError, TypeError):
            return  # not one of ours
        if origin == self.instance_id:
            return
        self.received += 1
        if kind == "final":
            self.broker.deliver(job_id, JobEvent("final", status=str(note.get("s", ""))))
            if self.on_remote_final is not None:
                self.on_remote_final(job_id)
        else:
            self.broker.deliver(job_id, JobEvent("message"))


__all__ = ["CHANNEL", "PostgresRelay", "libpq_url"]
