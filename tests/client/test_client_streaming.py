"""Interim-result streaming against the real service: order, exactly-once delivery, a callback that
raises, a socket cut mid-stream (through a TCP proxy), and cancelling the stream."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from client_support import BACKEND, started_callback
from faultproxy import TcpProxy
from service_helpers import RunningService, start_service, stop_service

from prefect_qiskit_runtime.client import RuntimeService
from prefect_qiskit_runtime.core.exceptions import RequestsApiError, RuntimeInvalidStateError


class Recorder:
    """Collects callback invocations and signals when a given message arrives."""

    def __init__(self, on: dict[int, Any] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[str] = set()
        self._on: dict[int, Any] = on or {}

    def __call__(self, job_id: str, message: Any) -> None:
        self.calls.append((job_id, message))
        self.threads.add(threading.current_thread().name)
        index = message.get("i", -1) if isinstance(message, dict) else -1
        action = self._on.get(index)
        if action is not None:
            action()

    @property
    def indices(self) -> list[int]:
        return [m["i"] for _, m in self.calls if isinstance(m, dict)]


def test_hello_world_callback_in_order_on_a_worker_thread(
    alice: RuntimeService, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    caplog.set_level(logging.DEBUG)  # the websocket library logs handshake headers at DEBUG
    job = alice.run("hello-world", BACKEND, {"iterations": 3}, callback=recorder)
    assert job.result() == "All done!"
    assert "X-Access-Token" in caplog.text  # the handshake was logged ...
    assert alice.transport.token not in caplog.text  # ... without the token
    # result() returns only after the stream has delivered every interim result.
    assert [m["iteration"] for _, m in recorder.calls] == [0, 1, 2]
    assert all(job_id == job.job_id() for job_id, _ in recorder.calls)
    assert all(isinstance(m["counts"], dict) for _, m in recorder.calls)
    assert threading.current_thread().name not in recorder.threads
    assert [m["iteration"] for m in job.interim_results()] == [0, 1, 2]


def test_callback_that_raises_is_logged_and_streaming_goes_on(
    alice: RuntimeService, streamer: str, caplog: pytest.LogCaptureFixture
) -> None:
    def kaboom() -> None:
        raise RuntimeError("Kaboom!")

    recorder = Recorder(on={1: kaboom})
    with caplog.at_level(logging.WARNING, logger="prefect_qiskit_runtime"):
        job = alice.run(streamer, BACKEND, {"n": 5}, callback=recorder)
        assert job.result() == "streamed"
    assert recorder.indices == [0, 1, 2, 3, 4]
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "Kaboom" in r.getMessage()
    ]
    assert len(warnings) == 1


def test_socket_cut_mid_stream_loses_and_repeats_nothing(
    service: RunningService, streamer: str, tmp_path: Path
) -> None:
    """The connection is cut twice: while the job is held after message 3, and right after 7."""
    proxy = TcpProxy(service.url)
    gate = tmp_path / "gate"
    client = RuntimeService(proxy.url, service.add_user("alice"))

    def cut_and_release() -> None:
        assert proxy.cut() >= 1
        gate.touch()

    recorder = Recorder(on={3: cut_and_release, 7: proxy.cut})
    try:
        job = client.run(
            streamer, BACKEND, {"n": 12, "gate": str(gate), "gate_at": 3}, callback=recorder
        )
        assert job.result(timeout=120) == "streamed"
    finally:
        gate.touch()
        proxy.close()
    assert recorder.indices == list(range(12))
    stream = job._stream
    assert stream is not None and stream.completed
    # The first cut is certain to fall mid-stream (the job is held); the second may come after the
    # last frames were already buffered on the client side.
    assert stream.connections >= 2


def test_stream_results_after_run_and_cancel_streaming(
    alice: RuntimeService, waiter: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    job = alice.run(waiter, BACKEND, {"gate": str(gate)})
    started, callback = started_callback()
    job.stream_results(callback)
    assert started.wait(60)  # "started" was published and is delivered even if sent before
    with pytest.raises(RuntimeInvalidStateError, match="already streaming"):
        job.stream_results(callback)
    job.cancel_result_streaming()
    stream = job._stream
    assert stream is not None and stream.join(30)
    assert not stream.completed
    gate.touch()
    assert job.result(timeout=60) == "released"
    with pytest.raises(RuntimeInvalidStateError, match="already finished"):
        job.stream_results(callback)


def test_https_with_a_ca_bundle_streams_over_wss(tmp_path: Path) -> None:
    """A service with a self-signed certificate: ``verify`` takes its CA file, for HTTP and wss."""
    tls = start_service(tmp_path / "tls-home", "--tls-self-signed", "--workers", "1")
    try:
        token = tls.add_user("alice")
        assert tls.url.startswith("https://")
        with pytest.raises(RequestsApiError, match="TLS certificate"):
            RuntimeService(tls.url, token).backends()
        client = RuntimeService(tls.url, token, verify=str(tls.home / "tls" / "cert.pem"))
        recorder = Recorder()
        job = client.run("hello-world", BACKEND, {"iterations": 2}, callback=recorder)
        assert job.result(timeout=120) == "All done!"
        assert [m["iteration"] for _, m in recorder.calls] == [0, 1]
    finally:
        stop_service(tls)
