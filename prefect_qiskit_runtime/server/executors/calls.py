"""The service's half of a job's channel: calls written to a job's connection, replies read back.

See :mod:`prefect_qiskit_runtime.server.calls` for the job's half and the frames. A call is
written to the job's connection as soon as the job's process has connected (before that it
waits in the job's outbox, so a channel may be opened the moment the job is submitted); its
future is settled by the job's ``reply`` frame, or failed when the job's connection closes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prefect_qiskit_runtime.server.executors.ipc import encode_frame

if TYPE_CHECKING:
    from prefect_qiskit_runtime.server.executors.jobs import LocalJob

__all__ = [
    "MAX_CALLS_IN_FLIGHT",
    "CallFailed",
    "ChannelClosed",
    "ChannelError",
    "ChannelUnavailable",
    "TooManyCalls",
    "end_calls",
    "fail_calls",
    "flush_outbox",
    "send_call",
    "settle_reply",
]

#: Calls one job may have unanswered at once; more are refused (the job is not reading).
MAX_CALLS_IN_FLIGHT = 64


class ChannelError(Exception):
    """A call into a job did not get the program's answer.

    Attributes:
        code: The error code the channel's client receives.
    """

    code = "CHANNEL_ERROR"


class ChannelUnavailable(ChannelError):
    """This executor does not run the job (any more), or relays no calls."""

    code = "CHANNEL_UNAVAILABLE"


class ChannelClosed(ChannelError):
    """The job's process went away before it answered."""

    code = "JOB_ENDED"


class TooManyCalls(ChannelError):
    """The job already has :data:`MAX_CALLS_IN_FLIGHT` unanswered calls."""

    code = "TOO_MANY_CALLS"


class CallFailed(ChannelError):
    """The program answered the call with ``Call.fail``."""

    code = "CALL_FAILED"


async def send_call(job: LocalJob, data: str) -> str:
    """Send ``data`` to the job's program as one call and wait for its reply.

    Args:
        job: A job of the local executor that is not finishing.
        data: The call's JSON text.

    Returns:
        The reply's JSON text.

    Raises:
        ChannelClosed: The job's process went away (or had already) before answering.
        TooManyCalls: The job has too many unanswered calls.
        CallFailed: The program failed the call.
    """
    if job.ended_calls or (job.connected and not job.conn_open):
        raise ChannelClosed("the job takes no more calls")
    if len(job.calls) >= MAX_CALLS_IN_FLIGHT:
        raise TooManyCalls(f"the job has {MAX_CALLS_IN_FLIGHT} unanswered calls")
    job.call_seq += 1
    call_id = job.call_seq
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    job.calls[call_id] = future
    _write(job, {"t": "call", "id": call_id, "data": data})
    try:
        return await future
    finally:
        job.calls.pop(call_id, None)


def end_calls(job: LocalJob) -> None:
    """Tell the job's program that no more calls come (its ``receive`` returns ``None``)."""
    if not job.ended_calls:
        job.ended_calls = True
        _write(job, {"t": "end"})


def settle_reply(job: LocalJob, frame: dict[str, Any]) -> None:
    """Hand a ``reply`` frame to the call waiting for it (a late reply is dropped)."""
    try:
        call_id = int(frame.get("id"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    future = job.calls.get(call_id)
    if future is None or future.done():
        return
    if "error" in frame:
        future.set_exception(CallFailed(str(frame["error"])))
    else:
        future.set_result(str(frame.get("data")))


def fail_calls(job: LocalJob, reason: str) -> None:
    """Fail every unanswered call of a job whose process is gone; later calls are refused."""
    job.ended_calls = True
    job.outbox.clear()
    for future in job.calls.values():
        if not future.done():
            future.set_exception(ChannelClosed(reason))
            # Nobody may be waiting any more (the client left); the exception is expected then.
            future.exception()


def flush_outbox(job: LocalJob) -> None:
    """Write what was sent before the job's process connected."""
    if job.writer is not None and job.outbox:
        for data in job.outbox:
            job.writer.write(data)
        job.outbox.clear()


def _write(job: LocalJob, frame: dict[str, Any]) -> None:
    data = encode_frame(frame)
    if job.writer is not None and job.conn_open:
        job.writer.write(data)
    else:
        job.outbox.append(data)
