"""Length-prefixed JSON frames between the local executor, its warm parent and the job processes.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (an object with a
``"t"`` key naming its kind). The same framing is used on two channels:

- control (executor ⇄ warm parent, a socketpair): ``spares`` (how many prepared spare processes to
  keep, and whether they warm up), ``run``, ``kill``, ``release`` (the executor has finished a job,
  so its slot may get a spare again), ``shutdown`` one way; ``ready``, ``spawned``,
  ``spawn_failed``, ``exited`` the other way;
- job (job process → executor, a unix socket the executor serves): ``hello`` (job id, the job's
  one-time token, the process id), ``started``, any number of ``message``, then ``result`` or
  ``error`` (with the process's own CPU time and peak RSS), then EOF.

This module imports nothing heavy: it runs in the service, the warm parent and every job process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

__all__ = [
    "EXIT_SETUP_FAILED",
    "LOG_FILE",
    "FrameBuffer",
    "FrameTooLarge",
    "encode_frame",
    "read_frame",
    "send_frame",
]

_HEADER = struct.Struct("!I")

#: Exit code of a job process that failed before it could run the program.
EXIT_SETUP_FAILED = 70
#: The job's log file in its working directory: its process writes it, the executor reads it.
LOG_FILE = "job.log"


class FrameTooLarge(ValueError):
    """A frame announced more bytes than the channel accepts."""


def encode_frame(obj: dict[str, Any]) -> bytes:
    """Serialise ``obj`` as one frame (length prefix included).

    Example:
        >>> encode_frame({"t": "started"})[:4]
        b'\\x00\\x00\\x00\\x10'
    """
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(body)) + body


def send_frame(sock: socket.socket, obj: dict[str, Any]) -> None:
    """Write one frame to a blocking socket."""
    sock.sendall(encode_frame(obj))


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> dict[str, Any] | None:
    """Read one frame from an asyncio stream.

    Args:
        reader: The stream.
        max_bytes: Largest accepted frame body.

    Returns:
        The decoded object, or ``None`` at a clean end of stream (EOF between frames).

    Raises:
        FrameTooLarge: If the frame announces more than ``max_bytes``.
        asyncio.IncompleteReadError: If the stream ends inside a frame.
        ValueError: If the body is not a JSON object.
    """
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    (size,) = _HEADER.unpack(header)
    if size > max_bytes:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {max_bytes} bytes")
    obj = json.loads(await reader.readexactly(size))
    if not isinstance(obj, dict):
        raise ValueError("frame is not a JSON object")
    return obj


class FrameBuffer:
    """Incremental decoder for a non-blocking reader (the warm parent's control socket).

    Example:
        >>> buf = FrameBuffer()
        >>> data = encode_frame({"t": "a"}) + encode_frame({"t": "b"})
        >>> [f["t"] for f in buf.feed(data[:7])], [f["t"] for f in buf.feed(data[7:])]
        ([], ['a', 'b'])
    """

    def __init__(self, max_bytes: int = 1 << 31) -> None:
        self._buf = bytearray()
        self._max = max_bytes

    @property
    def pending(self) -> int:
        """Bytes received that do not complete a frame yet (non-zero at EOF: a cut frame)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add bytes and return every frame they complete.

        Raises:
            FrameTooLarge: If a frame announces more than the limit.
            ValueError: If a frame's body is not JSON.
        """
        self._buf += data
        frames: list[dict[str, Any]] = []
        pos = 0
        while len(self._buf) - pos >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buf, pos)
            if size > self._max:
                raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {self._max}")
            end = pos + _HEADER.size + size
            if len(self._buf) < end:
                break
            frames.append(json.loads(self._buf[pos + _HEADER.size : end]))
            pos = end
        if pos:
            del self._buf[:pos]
        return frames
