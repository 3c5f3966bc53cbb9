"""The websocket of calls into a running job: ``WS /runtime/jobs/{job_id}/channel``.

Frames are JSON text. From the client: ``{"id": ID, "message": "<JSON text>"}`` (a call; ``ID``
is any JSON number or string of the client's, echoed back) and ``{"end": true}`` (no more calls:
the program's ``receive`` returns ``None``). From the service: ``{"ready": true, "job": ...}`` once
the job runs here, then per call ``{"id": ID, "message": "<JSON text>"}`` or ``{"id": ID,
"error": {"message", "code"}}``, in the order the replies come. The service closes with 1000
when the job became final, 4404 for an unknown job, 4410 for a job that was final already, 4409
when this instance cannot serve it (the job runs elsewhere, or the executor relays no calls). A
missing or bad token is refused before the upgrade (the policy-violation close before ``accept``
reaches the client as HTTP 403, as on the stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from prefect_qiskit_runtime.server import auth
from prefect_qiskit_runtime.server.api.stream import POLICY_VIOLATION
from prefect_qiskit_runtime.server.auth import authenticate
from prefect_qiskit_runtime.server.executors.base import Executor
from prefect_qiskit_runtime.server.executors.calls import MAX_CALLS_IN_FLIGHT, ChannelError
from prefect_qiskit_runtime.server.runtime import Runtime, runtime_of
from prefect_qiskit_runtime.server.usecases import channel as channel_cases
from prefect_qiskit_runtime.server.usecases.errors import InvalidState, JobNotFound

#: Close codes of a refused channel (4000-4999 are the application's own, RFC 6455 §7.4.2).
NOT_FOUND = 4404
NOT_SERVED_HERE = 4409
JOB_GONE = 4410

router = APIRouter()


@router.websocket("/runtime/jobs/{job_id}/channel")
async def channel(websocket: WebSocket, job_id: str) -> None:
    """Relay calls to the job's program and its replies back (see the module docstring)."""
    runtime = runtime_of(websocket)
    user = await authenticate(runtime.tokens, websocket.headers.get(auth.TOKEN_HEADER))
    if user is None:
        await websocket.close(code=POLICY_VIOLATION, reason="invalid or missing access token")
        return
    await websocket.accept()
    # Frames are read from the start, so that a client leaving while the job is still queued
    # ends the wait, and pings sent meanwhile are answered; calls wait in ``inbox`` (at most
    # MAX_CALLS_IN_FLIGHT, then the socket is no longer read) until the job runs here.
    inbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=MAX_CALLS_IN_FLIGHT)
    reader = asyncio.create_task(_read_frames(websocket, inbox))
    try:
        located = asyncio.create_task(channel_cases.locate(runtime, user, job_id))
        await asyncio.wait((located, reader), return_when=asyncio.FIRST_COMPLETED)
        if not located.done():
            located.cancel()  # the client left before the job ran here
            return
        try:
            executor = located.result()
        except JobNotFound as exc:
            await websocket.close(code=NOT_FOUND, reason=str(exc)[:120])
            return
        except channel_cases.JobIsFinal as exc:
            await websocket.close(code=JOB_GONE, reason=str(exc)[:120])
            return
        except InvalidState as exc:
            await websocket.close(code=NOT_SERVED_HERE, reason=str(exc)[:120])
            return
        relay = _Relay(runtime, executor, job_id, websocket, inbox)
        try:
            await websocket.send_text(json.dumps({"ready": True, "job": job_id}))
            await relay.run()
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            await relay.stop()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    if websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code=1000, reason="the job ended")


class _Relay:
    """One channel connection: each call in a task of its own, replies sent as they come."""

    def __init__(
        self,
        runtime: Runtime,
        executor: Executor,
        job_id: str,
        websocket: WebSocket,
        inbox: asyncio.Queue[str | None],
    ) -> None:
        self.runtime = runtime
        self.executor = executor
        self.job_id = job_id
        self.websocket = websocket
        self.inbox = inbox
        self.limit = runtime.config.max_message_bytes
        self.calls: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Handle the client's frames until it leaves or the job ends."""
        reader = asyncio.create_task(self._handle())
        ended = asyncio.create_task(self._job_final())
        try:
            await asyncio.wait((reader, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, ended):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if ended.done() and not ended.cancelled() and self.calls:
            # The job ended: the replies it gave, or the errors of the calls it did not answer.
            await asyncio.wait(self.calls)

    async def stop(self) -> None:
        """Drop calls still waiting (the client left): their late replies go nowhere."""
        for task in list(self.calls):
            task.cancel()

    async def _handle(self) -> None:
        while (text := await self.inbox.get()) is not None:
            try:
                frame: Any = json.loads(text)
            except ValueError:
                frame = None
            if not isinstance(frame, dict):
                await self._send({"id": None, "error": _error("a frame must be a JSON object")})
                continue
            if frame.get("end") is True:
                self.executor.end_calls(self.job_id)
                continue
            call_id, message = frame.get("id"), frame.get("message")
            if not isinstance(message, str) or not _valid_id(call_id):
                problem = "a call is {'id': number or string, 'message': JSON text}"
                await self._send({"id": _echo(call_id), "error": _error(problem)})
                continue
            if len(message) > self.limit:
                problem = f"a call's message is larger than the limit of {self.limit} bytes"
                await self._send({"id": call_id, "error": _error(problem, "MESSAGE_TOO_LARGE")})
                continue
            task = asyncio.create_task(self._call(call_id, message))
            self.calls.add(task)
            task.add_done_callback(self.calls.discard)

    async def _call(self, call_id: Any, message: str) -> None:
        outcome = "answered"
        try:
            reply = await self.executor.call(self.job_id, message)
            body: dict[str, Any] = {"id": call_id, "message": reply}
        except ChannelError as exc:
            outcome = exc.code.lower()
            body = {"id": call_id, "error": _error(str(exc), exc.code)}
        self.runtime.metrics.channel_calls.labels(outcome).inc()
        with contextlib.suppress(Exception):
            await self._send(body)

    async def _send(self, body: dict[str, Any]) -> None:
        await self.websocket.send_text(json.dumps(body))

    async def _job_final(self) -> None:
        with self.runtime.broker.subscribe(self.job_id) as sub:
            while self.executor.has_job(self.job_id):
                event = await sub.get(timeout=5.0)
                if event is not None and event.kind == "final":
                    return


async def _read_frames(websocket: WebSocket, inbox: asyncio.Queue[str | None]) -> None:
    """Put each text frame of the client into ``inbox``; ``None`` once it left."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", errors="replace")
            await inbox.put(text if text is not None else "")
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    finally:
        while True:
            try:
                inbox.put_nowait(None)
                break
            except asyncio.QueueFull:
                inbox.get_nowait()  # the client left: a call of its that was never sent is dropped


def _valid_id(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _echo(value: Any) -> Any:
    return value if _valid_id(value) else None


def _error(message: str, code: str = "INVALID_REQUEST") -> dict[str, str]:
    return {"message": message, "code": code}


__all__ = ["router"]
