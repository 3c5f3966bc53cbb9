"""Interim-result use cases: the stored messages of a job, and following a job as it runs.

Two ways to follow a job (``docs/internals.md``): *plain*, the old client's, sends each message
text once across all of a job's connections (a per-job delivery cursor in the store); *resume*,
with ``after=SEQ``, sends every message after ``SEQ`` as a ``{"seq", "message"}`` envelope. Both
end when the job is final. Events from the broker only wake the follower; what to send is always
read from the store, so messages published by another service instance arrive too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from prefect_qiskit_runtime.server.auth import store_read
from prefect_qiskit_runtime.server.broker import Subscription
from prefect_qiskit_runtime.server.store import Job, User
from prefect_qiskit_runtime.server.usecases.errors import JobNotFound
from prefect_qiskit_runtime.server.usecases.jobs import RECHECK_SECONDS

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.runtime import Runtime

#: Messages read from the store per query.
MESSAGE_PAGE = 1000

#: Sends one text frame to the follower's client.
Send = Callable[[str], Awaitable[None]]


def interim_results(runtime: Runtime, user: User, job_id: str, after: int) -> list[tuple[int, str]]:
    """Every stored interim result of the caller's job after sequence number ``after``, in order.

    Args:
        runtime: The service instance.
        user: The caller.
        job_id: The job.
        after: Leave out the messages up to and including this sequence number.

    Returns:
        ``(seq, message)`` pairs.

    Raises:
        JobNotFound: If the caller has no such job.
    """
    store = runtime.store
    if store.get_job(job_id, user.id, light=True) is None:
        raise JobNotFound(job_id)
    messages: list[tuple[int, str]] = []
    cursor = after
    while True:
        page = store.messages_after(job_id, cursor, limit=MESSAGE_PAGE)
        messages.extend(page)
        if len(page) < MESSAGE_PAGE:
            return messages
        cursor = page[-1][0]


async def follow_job(
    runtime: Runtime, user: User, job_id: str, after: int | None, send: Send, gone: asyncio.Event
) -> None:
    """Send a job's interim results as they come, until the job is final or the client left.

    Args:
        runtime: The service instance.
        user: The caller; an unknown job (or another user's) ends the stream at once.
        job_id: The job.
        after: ``None`` for the plain mode, else the sequence number to resume after.
        send: Sends one text frame.
        gone: Set when the client went away.

    Raises:
        Exception: Whatever ``send`` raises (a message not sent in plain mode is given back first).
    """
    follower = _Follower(runtime, user, job_id, send, gone)
    with runtime.broker.subscribe(job_id) as sub:
        if after is None:
            await follower.plain(sub)
        else:
            await follower.resume(sub, after)


class _Follower:
    """One client following one job."""

    def __init__(
        self, runtime: Runtime, user: User, job_id: str, send: Send, gone: asyncio.Event
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.user = user
        self.job_id = job_id
        self.send = send
        self.gone = gone

    async def _wait(self, sub: Subscription) -> None:
        """Until an event arrives, the client goes away, or it is time to re-read the store."""
        get = asyncio.ensure_future(sub.get(RECHECK_SECONDS))
        gone = asyncio.ensure_future(self.gone.wait())
        try:
            await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (get, gone):
                fut.cancel()
        # Drain whatever else is queued: every wake-up re-reads the store anyway.
        while not sub.queue.empty():
            sub.queue.get_nowait()

    async def _job(self) -> Job | None:
        store = self.store
        return await store_read(store, store.get_job, self.job_id, self.user.id, light=True)

    async def _messages_after(self, cursor: int) -> list[tuple[int, str]]:
        return await store_read(self.store, self.store.messages_after, self.job_id, cursor)

    async def resume(self, sub: Subscription, after: int) -> None:
        """Send every message after ``after`` as an envelope, then the new ones as they come."""
        cursor = after
        while not self.gone.is_set():
            job = await self._job()
            if job is None:
                return
            for seq, data in await self._messages_after(cursor):
                await self.send(json.dumps({"seq": seq, "message": data}))
                cursor = seq
            if job.is_final:
                return
            await self._wait(sub)

    async def plain(self, sub: Subscription) -> None:
        """Send each message text not yet delivered to any plain connection of the job."""
        grace = self.runtime.config.plain_stream_grace
        job = await self._job()
        if job is None:
            return
        cursor = await run_in_threadpool(self.store.open_plain_cursor, self.job_id, grace)
        if cursor is None:
            return
        while not self.gone.is_set():
            job = await self._job()
            if job is None:
                return
            contended = False
            for seq, data in await self._messages_after(cursor):
                if self.gone.is_set():
                    return
                owned = await run_in_threadpool(self.store.advance_plain_cursor, self.job_id, seq)
                if not owned:
                    contended = True  # another plain connection of this job delivers it
                    break
                try:
                    await self.send(data)
                except Exception:
                    await run_in_threadpool(self.store.rewind_plain_cursor, self.job_id, seq)
                    raise
                cursor = seq
            if contended:
                fresh = await self._job()
                if fresh is None or fresh.plain_cursor is None or fresh.is_final:
                    return
                cursor = fresh.plain_cursor
            elif job.is_final:
                return
            await self._wait(sub)


__all__ = ["MESSAGE_PAGE", "follow_job", "interim_results"]
