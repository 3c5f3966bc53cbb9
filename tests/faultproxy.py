"""Fault injection between a client and a real service, for the client and reliability tests.

- :class:`FaultProxy` is an HTTP proxy that, request by request, passes the exchange through,
  forwards the request and then drops the answer (the service has acted, the client sees a closed
  connection), loses the request (the connection closes before anything reaches the service), or
  answers 429/503 itself without forwarding.
- :class:`TcpProxy` forwards raw TCP (websockets too) and can cut every open connection at once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PASS, DROP, LOSE, TOO_MANY, UNAVAILABLE = "pass", "drop", "lose", "429", "503"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}

Plan = Callable[[int, str, str], str]


@dataclass
class Exchange:
    """One request seen by the proxy."""

    n: int
    method: str
    path: str
    action: str
    at: float
    status: int | None = None


def every_nth_plan(actions: list[str]) -> Plan:
    """A plan that applies ``actions[n % len(actions)]`` to the n-th request (counting from 0)."""
    return lambda n, method, path: actions[n % len(actions)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log."""

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        exchange = proxy._record(self.command, self.path)
        self.close_connection = True
        if exchange.action == LOSE:
            # Nothing reaches the service; the client sees its connection closed.
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if exchange.action in (TOO_MANY, UNAVAILABLE):
            payload = json.dumps({"error": {"message": "injected", "code": "INJECTED"}}).encode()
            self.send_response(int(exchange.action))
            self.send_header("Retry-After", str(proxy.retry_after))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            exchange.status = int(exchange.action)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        exchange.status = response.status
        if exchange.action == DROP:
            # The service has acted; the client only sees its connection closed without an answer.
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() not in ("date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class FaultProxy:
    """An HTTP proxy in front of ``upstream`` that injects faults according to ``plan``.

    Args:
        upstream: The service root, ``http://127.0.0.1:PORT``.
        plan: ``plan(n, method, path)`` → ``"pass"``, ``"drop"``, ``"lose"``, ``"429"``, ``"503"``.
        retry_after: The ``Retry-After`` header sent with injected 429/503 answers.
    """

    def __init__(self, upstream: str, plan: Plan | None = None, retry_after: float = 0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.plan: Plan = plan or (lambda n, m, p: PASS)
        self.retry_after = retry_after
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The proxy's root URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _record(self, method: str, path: str) -> Exchange:
        with self._lock:
            n = len(self.exchanges)
            exchange = Exchange(n, method, path, self.plan(n, method, path), time.monotonic())
            self.exchanges.append(exchange)
            return exchange

    def count(self, action: str) -> int:
        """How many exchanges got ``action``."""
        return sum(1 for e in self.exchanges if e.action == action)

    def close(self) -> None:
        """Stop the proxy."""
        self._server.shutdown()
        self._server.server_close()


class TcpProxy:
    """A TCP forwarder to ``upstream`` whose open connections can be cut at once.

    Args:
        upstream: The service root, ``http://127.0.0.1:PORT``.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The proxy's root URL."""
        host, port = self._listener.getsockname()[:2]
        return f"http://{host}:{port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._pairs.append((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Cut every open connection abruptly; returns how many were cut."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        return len(pairs)

    def close(self) -> None:
        """Stop accepting and cut everything."""
        self._closed = True
        self._listener.close()
        self.cut()
