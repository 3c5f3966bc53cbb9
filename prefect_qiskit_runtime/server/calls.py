"""A running job's half of its channel: the calls a client sends it, and the program's replies.

A client may open ``WS /runtime/jobs/{id}/channel`` to a running job and send it *calls* (any
RuntimeEncoder JSON); the program takes them with ``user_messenger.receive()`` and answers each
with :meth:`Call.reply` (or :meth:`Call.fail`). The service relays both ways over the job's own
connection to the executor (:mod:`.executors.calls` is the service's half), so a call costs no
job, no database write and no process start: a hybrid loop keeps one warm job for all of its
iterations. Replies are answers, not interim results: they are not stored or streamed.

Frames from the executor on the job's connection: ``{"t": "call", "id": n, "data": text}`` and
``{"t": "end"}`` (a client said it has no more calls). Frames back: ``{"t": "reply", "id": n,
"data": text}`` or ``{"t": "reply", "id": n, "error": message}``.

This module runs in job processes; it imports nothing heavy.
"""

from __future__ import annotations

import collections
import json
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from prefect_qiskit_runtime.server.executors.ipc import FrameBuffer

__all__ = ["Call", "Inbox", "serve"]

Send = Callable[[dict[str, Any]], None]


class Call:
    """One call a client sent the job.

    Attributes:
        id: The call's number on the job's connection (the executor's, not the client's).
        text: The call's RuntimeEncoder JSON text.
    """

    def __init__(self, call_id: int, text: str, send: Send) -> None:
        self.id = call_id
        self.text = text
        self._send = send
        self.answered = False

    @property
    def value(self) -> Any:
        """The call decoded with ``RuntimeDecoder`` (never unpickled)."""
        from prefect_qiskit_runtime.core.codec import RuntimeDecoder

        return json.loads(self.text, cls=RuntimeDecoder)

    def reply(self, value: Any, encoder: type[json.JSONEncoder] | None = None) -> None:
        """Answer the call with ``value`` (encoded with ``encoder``, default ``RuntimeEncoder``).

        Raises:
            RuntimeError: If the call was answered already.
            TypeError: If the encoder cannot serialise ``value``.
        """
        if encoder is None:
            from prefect_qiskit_runtime.core.codec import RuntimeEncoder

            encoder = RuntimeEncoder
        self._answer({"data": json.dumps(value, cls=encoder)})

    def fail(self, message: str) -> None:
        """Answer the call with an error: the client's ``call`` raises ``RuntimeCallFailed``.

        Raises:
            RuntimeError: If the call was answered already.
        """
        self._answer({"error": str(message)})

    def _answer(self, body: dict[str, Any]) -> None:
        if self.answered:
            raise RuntimeError(f"call {self.id} was answered already")
        self.answered = True
        self._send({"t": "reply", "id": self.id, **body})


class Inbox:
    """Reads the calls the executor writes to a job process's connection.

    Args:
        sock: The job's connection to the executor (blocking; the process also writes to it).
        send: Writes one frame to the executor (the replies go there).
        max_bytes: Largest frame accepted.
    """

    def __init__(self, sock: socket.socket, send: Send, max_bytes: int) -> None:
        self._sock = sock
        self._send = send
        self._frames = FrameBuffer(max_bytes)
        self._ready: collections.deque[dict[str, Any]] = collections.deque()
        self.ended = False

    def receive(self, timeout: float | None = None) -> Call | None:
        """The next call; ``None`` once a client ended the channel, or after ``timeout`` seconds.

        Args:
            timeout: Seconds to wait; ``None`` waits until a call or the end.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ended:
            while self._ready:
                frame = self._ready.popleft()
                if frame.get("t") == "end":
                    self.ended = True
                    return None
                if frame.get("t") == "call":
                    return Call(int(frame["id"]), str(frame.get("data")), self._send)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            readable, _, _ = select.select([self._sock], [], [], left)
            if not readable:
                return None
            data = self._sock.recv(1 << 20)
            if not data:
                self.ended = True  # the executor closed the connection: nobody can call
                return None
            self._ready.extend(self._frames.feed(data))
        return None


def serve(
    user_messenger: Any, handle: Callable[[Call], Any], idle_timeout: float | None = 300.0
) -> dict[str, int]:
    """Answer calls with ``handle`` until a client ends the channel or none came for a while.

    A call whose handler raises is failed with the exception's name and message; serving goes
    on. Programs use it as ``return serve(user_messenger, handler)``.

    Args:
        user_messenger: The program's ``user_messenger``.
        handle: Computes a call's reply value (``Call.reply`` is done here).
        idle_timeout: Seconds without a call after which serving ends; ``None`` never.

    Returns:
        ``{"calls": answered, "failed": failed}``.
    """
    answered = failed = 0
    while (call := user_messenger.receive(timeout=idle_timeout)) is not None:
        try:
            value = handle(call)
        except Exception as exc:
            call.fail(f"{type(exc).__name__}: {exc}")
            failed += 1
            continue
        call.reply(value)
        answered += 1
    return {"calls": answered, "failed": failed}
