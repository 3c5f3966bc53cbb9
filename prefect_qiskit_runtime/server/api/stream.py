"""Routes of interim results: the stored messages, and the websocket that follows a job."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from prefect_qiskit_runtime.server import auth
from prefect_qiskit_runtime.server.auth import authenticate, current_user
from prefect_qiskit_runtime.server.runtime import runtime_of
from prefect_qiskit_runtime.server.store import User
from prefect_qiskit_runtime.server.usecases import stream as stream_cases

#: Close code of a refused websocket (bad query, bad token): RFC 6455 "policy violation".
POLICY_VIOLATION = 1008

router = APIRouter()


@router.get(
    "/runtime/jobs/{job_id}/interim_results",
    tags=["jobs"],
    summary="Stored interim results of a job",
)
def interim_results(
    request: Request,
    job_id: str,
    after: int = Query(0, ge=0, le=2**31),
    user: User = Depends(current_user),
) -> Response:
    """``{"messages": [{"seq", "message"}]}`` in order, optionally only after ``after``."""
    messages = stream_cases.interim_results(runtime_of(request), user, job_id, after)
    return JSONResponse({"messages": [{"seq": s, "message": m} for s, m in messages]})


@router.websocket("/runtime/stream/jobs/{job_id}")
async def stream(websocket: WebSocket, job_id: str) -> None:
    """Interim results of a job.

    Plain mode (the old client): ``ACK``, then each message text once across connections (a
    per-job delivery cursor), then close 1000 when the job is final. With ``?after=SEQ``:
    ``ACK``, then ``{"seq", "message"}`` envelopes of every message after ``SEQ``, then close
    1000.
    """
    runtime = runtime_of(websocket)
    after_raw = websocket.query_params.get("after")
    after: int | None = None
    if after_raw is not None:
        try:
            after = int(after_raw)
        except ValueError:
            after = -1
        if after < 0:
            await websocket.close(
                code=POLICY_VIOLATION, reason="after must be a non-negative integer"
            )
            return
    user = await authenticate(runtime.tokens, websocket.headers.get(auth.TOKEN_HEADER))
    if user is None:
        await websocket.close(code=POLICY_VIOLATION, reason="invalid or missing access token")
        return
    await websocket.accept()
    try:
        await websocket.send_text("ACK")
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_client(websocket, gone))
        try:
            await stream_cases.follow_job(runtime, user, job_id, after, websocket.send_text, gone)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    if websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code=1000)


async def _watch_client(websocket: WebSocket, gone: asyncio.Event) -> None:
    # Reading is how a close frame from the client (or a dropped socket) becomes visible.
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except Exception:
        pass
    finally:
        gone.set()


__all__ = ["router"]
