"""Interim-result streaming over a websocket that resumes after a drop.

The service numbers each interim message (``seq`` 1, 2, ... without gaps) and, when asked with
``?after=SEQ``, sends only later ones in ``{"seq": n, "message": "<json text>"}`` envelopes. The
stream remembers the last number it delivered and reconnects with it, so a dropped socket loses
nothing and repeats nothing. It ends when the service closes the socket with 1000 after the job's
end.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from prefect_qiskit_runtime.client.transport import RETRY_STATUSES, RetryPolicy, Transport, Verify

logger = logging.getLogger(__name__)

Callback = Callable[[str, Any], Any]


class _RedactToken(logging.Filter):
    """Drop the access-token header from the websockets library's debug log of the handshake."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "x-access-token":
            record.args = (args[0], "***")
        return True


_ws_logger = logging.getLogger(__name__ + ".websocket")
_ws_logger.addFilter(_RedactToken())


def ssl_context(verify: Verify) -> ssl.SSLContext:
    """The TLS context for a ``wss`` URL matching the HTTP transport's ``verify`` setting.

    Args:
        verify: ``True`` (system store), ``False`` (no checks) or a CA bundle path.

    Returns:
        An ``ssl.SSLContext``.
    """
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


def decode_with(decoder: Any, text: str) -> Any:
    """Decode ``text`` with a ``ResultDecoder``-like class (``.decode``) or a plain callable."""
    if hasattr(decoder, "decode"):
        return decoder.decode(text)
    return decoder(text)


#: How long a finished job's wait lets its stream deliver the last interim results.
STREAM_DRAIN_SECONDS = 30.0


class ResultStream:
    """Streams one job's interim results to a callback on a worker thread.

    Callbacks run in ``seq`` order, one at a time, each message exactly once. An exception in the
    callback is logged as a warning and streaming goes on. A dropped connection is retried with
    exponential backoff (the count resets whenever a message arrives); when retries run out, a
    warning is logged and streaming stops without raising.

    Args:
        transport: The transport of the service (URL, token, TLS settings).
        job_id: The job to stream.
        callback: Called as ``callback(job_id, decoded_message)``.
        decoder: A ``ResultDecoder`` class (or callable) that decodes each message's JSON text.
        after: Deliver only messages with a larger sequence number.
        retry: Backoff settings; ``max_attempts`` bounds consecutive failed connections.

    Example:
        >>> stream = ResultStream(transport, job_id, print, ResultDecoder)  # doctest: +SKIP
        >>> stream.start(); stream.join(60)  # doctest: +SKIP
    """

    def __init__(
        self,
        transport: Transport,
        job_id: str,
        callback: Callback,
        decoder: Any,
        *,
        after: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._transport = transport
        self.job_id = job_id
        self._callback = callback
        self._decoder = decoder
        self.last_seq = after
        self._retry = retry or RetryPolicy(
            max_attempts=8, initial_backoff=0.2, max_backoff=8.0, jitter=0.2
        )
        self._stop = threading.Event()
        self._done = threading.Event()
        self._ws: Connection | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"runtime-stream-{job_id}", daemon=True
        )
        #: Set when the service closed the stream normally (every message was delivered).
        self.completed = False
        #: Connections opened so far (1 when nothing dropped).
        self.connections = 0

    def start(self) -> ResultStream:
        """Start the worker thread; returns ``self``."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the stream is still delivering."""
        return not self._done.is_set()

    def on_worker_thread(self) -> bool:
        """Whether the caller is the stream's own worker thread (a callback)."""
        return threading.current_thread() is self._thread

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the stream has ended.

        Returns:
            True if it ended within ``timeout``.
        """
        return self._done.wait(timeout)

    def drain(self, seconds: float = STREAM_DRAIN_SECONDS) -> None:
        """Let the stream deliver a finished job's last interim results, for up to ``seconds``.

        Returns at once on the stream's own worker thread (a callback waiting for its job).
        """
        if not self.running or self.on_worker_thread():
            return
        if not self.join(seconds):
            logger.warning(
                "Interim results of job %s still streaming %.0fs after the job ended",
                self.job_id,
                seconds,
            )

    def cancel(self) -> None:
        """Stop streaming: close the socket and let the worker thread end."""
        self._stop.set()
        with self._lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:
                logger.debug("Closing the stream of job %s failed", self.job_id, exc_info=True)

    def _url(self) -> str:
        return self._transport.ws_url(f"/stream/jobs/{self.job_id}") + f"?after={self.last_seq}"

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._done.set()

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._connect_once():
                    self.completed = True
                    return
                reason = "closed abnormally"
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status < 500 and status not in RETRY_STATUSES:
                    logger.warning(
                        "Streaming results of job %s refused with HTTP %d", self.job_id, status
                    )
                    return
                reason = f"HTTP {status}"
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = type(exc).__name__
            if self._stop.is_set():
                return
            if self._delivered_since_connect:
                failures = 0
            failures += 1
            if failures >= self._retry.max_attempts:
                logger.warning(
                    "Giving up streaming results of job %s after %d failed connections (%s)",
                    self.job_id,
                    failures,
                    reason,
                )
                return
            delay = self._retry.backoff(failures)
            logger.info(
                "Stream of job %s dropped (%s); resuming after message %d in %.2fs",
                self.job_id,
                reason,
                self.last_seq,
                delay,
            )
            self._stop.wait(delay)

    def _connect_once(self) -> bool:
        """One connection; True when the service closed it normally (the stream is complete)."""
        self._delivered_since_connect = False
        url = self._url()
        kwargs: dict[str, Any] = {}
        if url.startswith("wss"):
            kwargs["ssl"] = ssl_context(self._transport.verify)
        with connect(
            url,
            additional_headers={"X-Access-Token": self._transport.token},
            proxy=None,
            open_timeout=10,
            max_size=2**26,
            logger=_ws_logger,
            **kwargs,
        ) as ws:
            self.connections += 1
            with self._lock:
                self._ws = ws
            if self._stop.is_set():
                return False
            try:
                ws.recv()  # the acknowledgement frame
                for frame in ws:
                    self._handle(frame if isinstance(frame, str) else frame.decode("utf-8"))
                    self._delivered_since_connect = True
                    if self._stop.is_set():
                        return False
            except ConnectionClosed:
                pass
            finally:
                with self._lock:
                    self._ws = None
            code = ws.close_code
        return code == 1000 and not self._stop.is_set()

    def _handle(self, frame: str) -> None:
        seq: int | None = None
        text = frame
        try:
            envelope = json.loads(frame)
        except ValueError:
            envelope = None
        if isinstance(envelope, dict) and "seq" in envelope and "message" in envelope:
            seq = int(envelope["seq"])
            text = envelope["message"]
            if seq <= self.last_seq:
                return  # already delivered before a reconnect
        if seq is not None:
            self.last_seq = seq
        try:
            value = decode_with(self._decoder, text)
        except Exception as exc:
            logger.warning("Could not decode an interim result of job %s: %r", self.job_id, exc)
            value = text
        try:
            self._callback(self.job_id, value)
        except Exception as exc:
            logger.warning("The callback for interim results of job %s raised %r", self.job_id, exc)

    _delivered_since_connect = False


__all__ = ["ResultStream", "decode_with", "ssl_context"]
