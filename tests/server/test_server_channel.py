"""Calls into a running job over ``WS /runtime/jobs/{job_id}/channel``, at the frame level and
through the client's ``JobChannel``: echo, pipelining, failed calls, refusals, malformed frames,
the job ending under a pending call, channels opened early, reconnects, the built-in
``estimator``/``sampler`` serve mode and the ``pqr_channel_calls`` metric.

See the module docstring of ``prefect_qiskit_runtime/server/api/channel.py`` for the protocol.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests
from faultproxy import TcpProxy
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from server_helpers import SLEEPER, Api
from service_helpers import RunningService
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.sync.connection import Connection

from prefect_qiskit_runtime.client import RuntimeService
from prefect_qiskit_runtime.core.codec import RuntimeDecoder, RuntimeEncoder
from prefect_qiskit_runtime.core.exceptions import (
    RuntimeCallFailed,
    RuntimeChannelError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
)
from prefect_qiskit_runtime.server.executors.calls import MAX_CALLS_IN_FLIGHT

# Replies every call with its decoded value (so RuntimeEncoder tags go both ways); a value
# {"fail": message} is failed with ``call.fail`` instead. After a call was answered, a second
# answer must raise: the program counts those refusals. Returns the counts once a client ends.
ECHO = """
def main(backend, user_messenger, **kwargs):
    user_messenger.publish({"started": True})
    answered = failed = refused = 0
    while (call := user_messenger.receive()) is not None:
        value = call.value
        if isinstance(value, dict) and "fail" in value:
            call.fail(value["fail"])
            failed += 1
        else:
            call.reply(value)
            answered += 1
        try:
            call.reply("twice")
        except RuntimeError:
            refused += 1
    return {"answered": answered, "failed": failed, "refused": refused}
"""

# Takes calls and never answers them (it publishes the number of each one it took).
IGNORER = """
def main(backend, user_messenger, **kwargs):
    user_messenger.publish({"started": True})
    while (call := user_messenger.receive()) is not None:
        user_messenger.publish({"received": call.id})
    return "ended"
"""

# Answers ``calls`` calls, takes one more, and returns without answering it.
EXIT_AFTER = """
def main(backend, user_messenger, calls=1, **kwargs):
    user_messenger.publish({"started": True})
    for _ in range(calls):
        call = user_messenger.receive()
        call.reply(call.value)
    last = user_messenger.receive()
    return {"answered": calls, "unanswered": last is not None}
"""

# Holds its first call until the second came, answers the second first, then echoes.
LATE = """
def main(backend, user_messenger, **kwargs):
    first = user_messenger.receive()
    second = user_messenger.receive()
    second.reply(second.value)
    first.reply(first.value)
    n = 2
    while (call := user_messenger.receive()) is not None:
        call.reply(call.value)
        n += 1
    return n
"""

# Serves with the package's helper: 1 / value, so a call of 0 fails (the handler raises).
SERVE_HELPER = """
from prefect_qiskit_runtime.server.calls import serve

def main(backend, user_messenger, idle_timeout=None, **kwargs):
    return serve(user_messenger, lambda call: 1 / call.value, idle_timeout)
"""

# Does not read the channel: ``receive(timeout)`` only, returning how it ended.
RECEIVE_TIMEOUT = """
import time

def main(backend, user_messenger, timeout=0.3, **kwargs):
    begin = time.monotonic()
    call = user_messenger.receive(timeout=timeout)
    return {"call": call is not None, "waited": time.monotonic() - begin}
"""

RECV_TIMEOUT = 120
AER = {"backend_name": "aer_simulator"}


# ---- helpers ----------------------------------------------------------------------------------


def channel_url(api: Api, job_id: str) -> str:
    return f"{api.ws}/jobs/{job_id}/channel"


def open_ws(api: Api, job_id: str, token: str | None = None) -> ClientConnection:
    headers = {"X-Access-Token": api.token if token is None else token}
    return connect(
        channel_url(api, job_id), additional_headers=headers, open_timeout=60, close_timeout=10
    )


def recv(ws: Connection, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
    frame = json.loads(ws.recv(timeout=timeout))
    assert isinstance(frame, dict), frame
    return frame


def ready(ws: Connection, job_id: str) -> None:
    assert recv(ws) == {"ready": True, "job": job_id}


def send_call(ws: Connection, call_id: Any, value: Any) -> None:
    ws.send(json.dumps({"id": call_id, "message": json.dumps(value, cls=RuntimeEncoder)}))


def decoded(frame: dict[str, Any]) -> Any:
    assert "message" in frame, frame
    return json.loads(frame["message"], cls=RuntimeDecoder)


def close_code(ws: Connection, timeout: float = RECV_TIMEOUT) -> tuple[list[Any], Any]:
    """Every frame until the service closes, and the close code it sent."""
    frames: list[Any] = []
    try:
        while True:
            frames.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd else None


def result(api: Api, job_id: str) -> Any:
    response = api.get(f"/jobs/{job_id}/results")
    assert response.status_code == 200, response.text
    return json.loads(response.text, cls=RuntimeDecoder)


def completed(api: Api, job_id: str) -> Any:
    job = api.wait(job_id)
    assert job["status"] == "COMPLETED", job
    return result(api, job_id)


def channel_metric(url: str) -> dict[str, float]:
    """``pqr_channel_calls_total`` by outcome, from ``/metrics``."""
    text = requests.get(url + "/metrics", timeout=30).text
    pattern = r'^pqr_channel_calls_total\{outcome="([a-z_]+)"\} ([0-9.e+]+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.MULTILINE)}


@pytest.fixture(scope="module")
def programs(alice: Api) -> dict[str, str]:
    """The test programs, uploaded once by alice."""
    sources = {
        "echo": ECHO,
        "ignorer": IGNORER,
        "late": LATE,
        "exit_after": EXIT_AFTER,
        "serve_helper": SERVE_HELPER,
        "receive_timeout": RECEIVE_TIMEOUT,
        "sleeper": SLEEPER,
    }
    return {name: alice.upload(source) for name, source in sources.items()}


@pytest.fixture(scope="module")
def client(alice: Api) -> Iterator[RuntimeService]:
    """The package's client as alice."""
    service = RuntimeService(alice.url, alice.token)
    yield service
    service.close()


@pytest.fixture(autouse=True)
def _no_jobs_left(alice: Api) -> Iterator[None]:
    """Whatever a test leaves running (a failed assertion) does not hold the workers."""
    yield
    alice.cancel_pending()


# ---- the frames ---------------------------------------------------------------------------


def test_echo_in_order_then_end_completes(alice: Api, programs: dict[str, str]) -> None:
    """Replies equal what was sent (tagged values too), in order; ``end`` finishes the job."""
    job_id = alice.run(programs["echo"])
    values: list[Any] = [{"i": i, "s": "x" * i} for i in range(20)] + [
        np.array([[1.5, -2.0], [0.0, 3.25]]),
        complex(1.0, -2.5),
        [1, "two", None, 3.5],
    ]
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        for n, value in enumerate(values):
            send_call(ws, n, value)
            frame = recv(ws)
            assert frame["id"] == n and set(frame) == {"id", "message"}
            got = decoded(frame)
            if isinstance(value, np.ndarray):
                assert isinstance(got, np.ndarray) and got.dtype == value.dtype
                np.testing.assert_array_equal(got, value)
            else:
                assert type(got) is type(value) and got == value
        ws.send(json.dumps({"end": True}))
        frames, code = close_code(ws)
    assert frames == [] and code == 1000
    assert completed(alice, job_id) == {
        "answered": len(values),
        "failed": 0,
        "refused": len(values),
    }


def test_echo_through_the_client(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """``RuntimeService.open_channel`` with a ``RuntimeJob``: the same, with ``close`` ending."""
    job = client.run(programs["echo"], AER, {})
    array = np.arange(6, dtype=complex).reshape(2, 3) * (1 - 1j)
    with client.open_channel(job) as channel:
        assert channel.open() is channel and channel.connections == 1
        for i in range(10):
            assert channel.call({"i": i, "c": complex(i, -i)}) == {"i": i, "c": complex(i, -i)}
        np.testing.assert_array_equal(channel.call(array), array)
        assert channel.call_text('{"raw": [1, 2]}') == '{"raw": [1, 2]}'
        assert channel.connections == 1
    assert job.result(timeout=120) == {"answered": 12, "failed": 0, "refused": 12}
    assert job.status().name == "DONE"


def test_pipelined_calls_are_matched_by_id(alice: Api, programs: dict[str, str]) -> None:
    """Several calls before any reply: each reply carries its call's id (numbers or strings)."""
    job_id = alice.run(programs["echo"])
    ids: list[Any] = [f"call-{i}" for i in range(12)] + [100, 2.5, -7]
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        for call_id in ids:
            send_call(ws, call_id, {"for": call_id})
        replies = [recv(ws) for _ in ids]
        assert sorted(map(str, (r["id"] for r in replies))) == sorted(map(str, ids))
        for reply in replies:
            assert decoded(reply) == {"for": reply["id"]}
        ws.send(json.dumps({"end": True}))
        assert close_code(ws) == ([], 1000)
    assert completed(alice, job_id)["answered"] == len(ids)


def test_failed_call_then_the_channel_goes_on(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """``call.fail``: an error frame CALL_FAILED, ``RuntimeCallFailed``; later calls answered."""
    job_id = alice.run(programs["echo"])
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        send_call(ws, 1, {"fail": "no such energy"})
        assert recv(ws) == {"id": 1, "error": {"message": "no such energy", "code": "CALL_FAILED"}}
        send_call(ws, 2, "after")
        assert decoded(recv(ws)) == "after"
        # A client that leaves without ``end`` leaves the job running for the next connection.
    with client.open_channel(job_id) as channel:
        with pytest.raises(RuntimeCallFailed) as info:
            channel.call({"fail": "bad point"})
        assert str(info.value) == "bad point"
        assert info.value.error_code == "CALL_FAILED" and not info.value.retryable
        assert channel.call([1, 2, 3]) == [1, 2, 3]
    assert completed(alice, job_id) == {"answered": 2, "failed": 2, "refused": 4}


def test_a_call_timed_out_on_the_client_is_skipped_later(
    client: RuntimeService, programs: dict[str, str]
) -> None:
    """``call(timeout=...)``: ``RuntimeJobTimeoutError``, and its late reply is not taken for the
    answer of a later call."""
    job = client.run(programs["late"], AER, {})
    with client.open_channel(job) as channel:
        channel.open()
        with pytest.raises(RuntimeJobTimeoutError):
            channel.call("a", timeout=0.5)  # the program holds it until the next call
        assert channel.call("b") == "b"
        assert channel.call("c") == "c"  # the reply to "a" came in between
        assert channel.connections == 1
    assert job.result(timeout=120) == 3


def test_the_serve_helper_fails_a_raising_handler(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """``calls.serve``: a handler that raises fails that call with its type and message."""
    job = client.run(programs["serve_helper"], AER, {})
    with client.open_channel(job) as channel:
        assert channel.call(4) == 0.25
        with pytest.raises(RuntimeCallFailed, match="ZeroDivisionError: division by zero"):
            channel.call(0)
        assert channel.call(-2) == -0.5
    assert job.result(timeout=120) == {"calls": 2, "failed": 1}


def test_serve_helper_idle_timeout(alice: Api, programs: dict[str, str]) -> None:
    """With no call for ``idle_timeout`` seconds, serving ends and the job completes."""
    job_id = alice.run(programs["serve_helper"], {"idle_timeout": 0.5})
    assert completed(alice, job_id) == {"calls": 0, "failed": 0}


def test_receive_with_a_timeout_returns_none(alice: Api, programs: dict[str, str]) -> None:
    """``receive(timeout)`` with no client: ``None`` after about that long, not before."""
    job_id = alice.run(programs["receive_timeout"], {"timeout": 0.3})
    done = completed(alice, job_id)
    assert done["call"] is False and 0.29 <= done["waited"] < 30


# ---- refusals ---------------------------------------------------------------------------------


def test_unknown_and_foreign_jobs_are_4404(
    alice: Api, bob: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """An unknown job, and another user's running job, look the same: close 4404."""
    job_id = alice.run(programs["echo"])
    for api, target in ((alice, "no-such-job"), (bob, job_id)):
        with open_ws(api, target) as ws:
            frames, code = close_code(ws)
        assert frames == [] and code == 4404
    bobs = RuntimeService(bob.url, bob.token)
    try:
        for service, target in ((client, "no-such-job"), (bobs, job_id)):
            with pytest.raises(RuntimeJobNotFound) as info:
                service.open_channel(target).open()
            assert info.value.error_code == "JOB_NOT_FOUND"
    finally:
        bobs.close()
    # alice's job was not disturbed by bob.
    with client.open_channel(job_id) as channel:
        assert channel.call("mine") == "mine"
    assert completed(alice, job_id)["answered"] == 1


def test_finished_job_is_4410(alice: Api, client: RuntimeService, programs: dict[str, str]) -> None:
    """A final job takes no calls: close 4410, ``RuntimeChannelError`` JOB_ENDED (retryable)."""
    job_id = alice.run(programs["serve_helper"], {"idle_timeout": 0.2})
    completed(alice, job_id)
    with open_ws(alice, job_id) as ws:
        frames, code = close_code(ws)
    assert frames == [] and code == 4410
    with pytest.raises(RuntimeChannelError) as info:
        client.open_channel(job_id).call(1)
    assert info.value.error_code == "JOB_ENDED"
    assert info.value.retryable  # on a new job
    assert not isinstance(info.value, RuntimeCallFailed)


def test_token_is_required(alice: Api, client: RuntimeService, programs: dict[str, str]) -> None:
    """No or a bad token: the upgrade is refused (HTTP 403, as on the stream websocket)."""
    job_id = alice.run(programs["echo"])
    for token in ("", "not-a-token"):
        with pytest.raises(InvalidStatus) as info:
            open_ws(alice, job_id, token=token)
        assert info.value.response.status_code == 403
    stranger = RuntimeService(alice.url, "not-a-token")
    try:
        with pytest.raises(RuntimeChannelError) as refused:
            stranger.open_channel(job_id).open()
        assert refused.value.status_code == 403 and not refused.value.retryable
    finally:
        stranger.close()
    with client.open_channel(job_id) as channel:
        assert channel.call(1) == 1


def test_malformed_frames_get_errors_and_the_connection_stays(
    alice: Api, programs: dict[str, str]
) -> None:
    """Frames that are not calls: an INVALID_REQUEST error each (id echoed when it is valid)."""
    job_id = alice.run(programs["echo"])
    bad: list[tuple[str, Any]] = [
        ("not json", None),
        ("[1, 2]", None),
        (json.dumps({"message": "1"}), None),  # no id
        (json.dumps({"id": True, "message": "1"}), None),  # a boolean is no id
        (json.dumps({"id": {"x": 1}, "message": "1"}), None),
        (json.dumps({"id": 7, "message": 1}), 7),  # the message must be JSON text
        (json.dumps({"id": "q"}), "q"),
        (json.dumps({"end": "yes"}), None),  # only ``true`` ends
    ]
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        for text, echoed in bad:
            ws.send(text)
            frame = recv(ws)
            assert frame["id"] == echoed, (text, frame)
            assert frame["error"]["code"] == "INVALID_REQUEST", (text, frame)
            assert frame["error"]["message"]
        send_call(ws, 8, {"still": "here"})
        assert recv(ws) == {"id": 8, "message": json.dumps({"still": "here"})}
        ws.send(json.dumps({"end": True}))
        assert close_code(ws) == ([], 1000)
    assert completed(alice, job_id)["answered"] == 1


# ---- the job ends under a call ----------------------------------------------------------------


def test_program_exits_with_a_call_pending(alice: Api, programs: dict[str, str]) -> None:
    """The unanswered call gets JOB_ENDED, then the socket closes 1000 (the job is final)."""
    job_id = alice.run(programs["exit_after"], {"calls": 2})
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        for n in range(3):
            send_call(ws, n, n * 10)
        assert [decoded(recv(ws)) for _ in range(2)] == [0, 10]
        ended = recv(ws)
        assert ended["id"] == 2 and ended["error"]["code"] == "JOB_ENDED"
        assert close_code(ws) == ([], 1000)
    assert completed(alice, job_id) == {"answered": 2, "unanswered": True}


def test_program_exits_with_a_call_pending_through_the_client(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """``RuntimeChannelError`` JOB_ENDED, retryable; then the final job refuses the channel."""
    job = client.run(programs["exit_after"], AER, {"calls": 1})
    channel = client.open_channel(job.job_id())
    try:
        assert channel.call("one") == "one"
        with pytest.raises(RuntimeChannelError) as info:
            channel.call("two")
        assert info.value.error_code == "JOB_ENDED" and info.value.retryable
        assert not isinstance(info.value, RuntimeCallFailed)
        assert job.result(timeout=120) == {"answered": 1, "unanswered": True}
        with pytest.raises(RuntimeChannelError) as again:
            channel.call("three")
        assert again.value.error_code in ("CHANNEL_UNAVAILABLE", "JOB_ENDED")
    finally:
        channel.close()


def test_cancel_with_a_call_pending(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """A job cancelled while its program holds a call: JOB_ENDED, then 1000; CANCELLED."""
    job_id = alice.run(programs["ignorer"])
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        send_call(ws, "pending", 1)
        # The program took the call (it published so) and will never answer it.
        alice.wait_for(job_id, lambda j: j["message_count"] >= 2)
        assert alice.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
        ended = recv(ws)
        assert ended["id"] == "pending" and ended["error"]["code"] == "JOB_ENDED"
        assert close_code(ws) == ([], 1000)
    assert alice.wait(job_id)["status"] == "CANCELLED"

    # The same through the client, the call waiting in another thread.
    job = client.run(programs["ignorer"], AER, {})
    with client.open_channel(job) as channel, ThreadPoolExecutor(1) as pool:
        channel.open()
        pending = pool.submit(channel.call, "held")
        alice.wait_for(job.job_id(), lambda j: j["message_count"] >= 2)
        job.cancel()
        with pytest.raises(RuntimeChannelError) as info:
            pending.result(timeout=RECV_TIMEOUT)
    assert info.value.error_code == "JOB_ENDED" and info.value.retryable
    assert alice.wait(job.job_id())["status"] == "CANCELLED"


def test_end_with_calls_pending(alice: Api, programs: dict[str, str]) -> None:
    """``end`` while the program holds calls: it returns, the calls get JOB_ENDED, then 1000."""
    job_id = alice.run(programs["ignorer"])
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        send_call(ws, 1, "a")
        send_call(ws, 2, "b")
        alice.wait_for(job_id, lambda j: j["message_count"] >= 3)
        ws.send(json.dumps({"end": True}))
        frames, code = close_code(ws)
    assert sorted(f["id"] for f in frames) == [1, 2]
    assert {f["error"]["code"] for f in frames} == {"JOB_ENDED"}
    assert code == 1000
    assert completed(alice, job_id) == "ended"


def test_too_many_calls_in_flight(alice: Api, programs: dict[str, str]) -> None:
    """A job holding ``MAX_CALLS_IN_FLIGHT`` unanswered calls refuses the next: TOO_MANY_CALLS."""
    job_id = alice.run(programs["ignorer"])
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        for n in range(MAX_CALLS_IN_FLIGHT):
            send_call(ws, n, n)
        # Every one of them reached the program: the job holds them all.
        alice.wait_for(job_id, lambda j: j["message_count"] >= 1 + MAX_CALLS_IN_FLIGHT)
        send_call(ws, "one-too-many", 0)
        refused = recv(ws)
        assert refused["id"] == "one-too-many"
        assert refused["error"]["code"] == "TOO_MANY_CALLS"
        assert alice.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
        frames, code = close_code(ws)
    assert sorted(f["id"] for f in frames) == list(range(MAX_CALLS_IN_FLIGHT))
    assert {f["error"]["code"] for f in frames} == {"JOB_ENDED"} and code == 1000


# ---- opening early, reconnecting ----------------------------------------------------------


def test_channel_opened_at_submission(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """Connecting right after the submission: calls wait until the program has connected."""
    job_id = alice.run(programs["echo"])
    with open_ws(alice, job_id) as ws:
        ready(ws, job_id)
        for n in range(3):
            send_call(ws, n, {"early": n})
        assert [decoded(recv(ws)) for _ in range(3)] == [{"early": n} for n in range(3)]
        ws.send(json.dumps({"end": True}))
        assert close_code(ws) == ([], 1000)
    assert completed(alice, job_id)["answered"] == 3

    job = client.run(programs["echo"], AER, {})
    with client.open_channel(job) as channel:
        assert channel.call("first") == "first"
    assert job.result(timeout=120)["answered"] == 1


def test_channel_of_a_queued_job_waits_for_it(cap_user: Api) -> None:
    """A job still QUEUED: no ``ready`` yet, calls sent meanwhile are answered once it runs."""
    sleeper = cap_user.upload(SLEEPER)
    blockers = [cap_user.run(sleeper) for _ in range(3)]
    for blocker in blockers:
        cap_user.wait_running(blocker)
    job_id = cap_user.run(cap_user.upload(ECHO))
    with open_ws(cap_user, job_id) as ws:
        # The ping first: uvicorn stops reading a socket after a data frame until the app takes
        # it, and the app takes none before the job runs (a later ping would go unanswered).
        assert ws.ping().wait(30)
        send_call(ws, "queued", [1, 2])
        assert cap_user.job(job_id)["status"] == "QUEUED"
        impatient = RuntimeService(cap_user.url, cap_user.token)
        try:
            with pytest.raises(RuntimeJobTimeoutError, match="did not start"):
                impatient.open_channel(job_id, open_timeout=0.5).open()
        finally:
            impatient.close()
        for blocker in blockers:
            assert cap_user.request("POST", f"/jobs/{blocker}/cancel").status_code == 204
        ready(ws, job_id)
        assert recv(ws) == {"id": "queued", "message": "[1, 2]"}
        ws.send(json.dumps({"end": True}))
        assert close_code(ws) == ([], 1000)
    assert completed(cap_user, job_id)["answered"] == 1


def test_reconnect_without_end_keeps_the_job(
    alice: Api, client: RuntimeService, programs: dict[str, str]
) -> None:
    """A websocket closed without ``end`` leaves the job running; the next one is answered."""
    job_id = alice.run(programs["echo"])
    for n in range(3):
        with open_ws(alice, job_id) as ws:
            ready(ws, job_id)
            send_call(ws, n, f"connection {n}")
            assert decoded(recv(ws)) == f"connection {n}"
        assert alice.job(job_id)["status"] == "RUNNING"
    # One ``JobChannel`` closed without ending, then another.
    first = client.open_channel(job_id)
    assert first.call("a") == "a"
    first.close(end=False)
    assert alice.job(job_id)["status"] == "RUNNING"
    with client.open_channel(job_id) as second:
        assert second.call("b") == "b"
    assert completed(alice, job_id)["answered"] == 5


def test_dropped_connection_reconnects(
    service: RunningService, alice: Api, programs: dict[str, str]
) -> None:
    """A connection cut while idle: the next call opens a new one (``connections`` 2)."""
    proxy = TcpProxy(service.url)
    client = RuntimeService(proxy.url, alice.token)
    try:
        job = client.run(programs["echo"], AER, {})
        with client.open_channel(job) as channel:
            assert channel.call(1) == 1 and channel.connections == 1
            assert proxy.cut() >= 1
            assert channel.call(2) == 2
            assert channel.connections == 2
            assert alice.job(job.job_id())["status"] == "RUNNING"
            assert channel.call(3) == 3 and channel.connections == 2
        assert job.result(timeout=120)["answered"] == 3
    finally:
        client.close()
        proxy.close()


# ---- the built-in primitives serving calls --------------------------------------------------


def ansatz() -> QuantumCircuit:
    a, b = Parameter("a"), Parameter("b")
    qc = QuantumCircuit(2)
    qc.ry(a, 0)
    qc.ry(b, 1)
    qc.cx(0, 1)
    return qc


HAMILTONIAN = SparsePauliOp.from_list([("ZZ", 1.0), ("XI", 0.5), ("IY", -0.25), ("ZI", 0.3)])
POINTS = [[0.1, 0.2], [1.3, -0.7], [-2.0, 0.45], [0.1, 0.2]]


def test_estimator_idle_timeout_without_calls(alice: Api) -> None:
    """``serve`` with ``idle_timeout`` 1 and no client: the job completes with 0 calls."""
    job_id = alice.run("estimator", {"serve": {"idle_timeout": 1}})
    assert completed(alice, job_id) == {"calls": 0, "failed": 0, "circuits_prepared": 0}


def test_estimator_serve_matches_the_plain_estimator(client: RuntimeService) -> None:
    """Each call's values equal the plain job's for the same PUB; the circuit is prepared once."""
    circuit = ansatz()
    job = client.run("estimator", AER, {"serve": {"idle_timeout": 60}})
    served: list[float] = []
    with client.open_channel(job) as channel:
        for point in POINTS:
            reply = channel.call({"pubs": [[circuit, HAMILTONIAN, point]]})
            assert len(reply) == 1
            served.append(float(np.asarray(reply[0].data.evs)))
        both = channel.call({"pubs": [[circuit, HAMILTONIAN, POINTS[1]], [circuit, "ZZ", [0, 0]]]})
        with pytest.raises(RuntimeCallFailed):
            channel.call({"not": "pubs"})
    assert job.result(timeout=120) == {"calls": 5, "failed": 1, "circuits_prepared": 2}
    plain = client.run(
        "estimator", AER, {"pubs": [[circuit, HAMILTONIAN, point] for point in POINTS]}
    ).result(timeout=120)
    expected = [float(np.asarray(pub.data.evs)) for pub in plain]
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-9)
    assert served[0] == pytest.approx(served[3], abs=1e-12)
    assert len({round(v, 6) for v in served[:3]}) == 3  # the values really differ per point
    assert float(np.asarray(both[0].data.evs)) == pytest.approx(expected[1], abs=1e-9)
    assert float(np.asarray(both[1].data.evs)) == pytest.approx(1.0, abs=1e-9)


def test_estimator_serve_prepares_a_circuit_once(client: RuntimeService) -> None:
    """Several calls with one circuit and observable: ``circuits_prepared`` is 1."""
    circuit = ansatz()
    job = client.run("estimator", AER, {"serve": True})
    with client.open_channel(job) as channel:
        for point in POINTS:
            channel.call({"pubs": [[circuit, HAMILTONIAN, point]]})
    assert job.result(timeout=120) == {"calls": len(POINTS), "failed": 0, "circuits_prepared": 1}


def test_estimator_serve_data_reply(client: RuntimeService) -> None:
    """``"reply": "data"``: plain ``[{"evs", "stds"}]`` with the values of the full result."""
    circuit = ansatz()
    job = client.run("estimator", AER, {"serve": True})
    with client.open_channel(job) as channel:
        full = channel.call({"pubs": [[circuit, HAMILTONIAN, POINTS[1]]]})
        data = channel.call({"pubs": [[circuit, HAMILTONIAN, POINTS[1]]], "reply": "data"})
        text = channel.call_text(channel_text(circuit, POINTS[2]))
        with pytest.raises(RuntimeCallFailed, match="reply must be"):
            channel.call({"pubs": [[circuit, HAMILTONIAN, POINTS[1]]], "reply": "pickle"})
    assert data == [{"evs": pytest.approx(float(full[0].data.evs), abs=1e-12), "stds": 0.0}]
    plain = json.loads(text)  # plain JSON: no tags to decode
    assert isinstance(plain[0]["evs"], float) and "__type__" not in text
    assert job.result(timeout=120) == {"calls": 3, "failed": 1, "circuits_prepared": 1}


def channel_text(circuit: Any, point: list[float]) -> str:
    """A data-reply call as JSON text, as the session cost sends it."""
    return json.dumps(
        {"pubs": [[circuit, HAMILTONIAN, point]], "reply": "data"}, cls=RuntimeEncoder
    )


def test_sampler_serve_counts_sum_to_shots(client: RuntimeService) -> None:
    qc = ansatz()
    qc.measure_all()
    job = client.run("sampler", AER, {"serve": {"idle_timeout": 60}, "options": {"seed": 3}})
    with client.open_channel(job) as channel:
        totals = []
        for shots, point in ((300, [0.3, 0.5]), (77, [np.pi, 0.0])):
            reply = channel.call({"pubs": [[qc, point, shots]]})
            counts = reply[0].data.meas.get_counts()
            totals.append(sum(counts.values()))
        # RY(pi) on qubit 0 then CX: always |11>.
        assert counts == {"11": 77}
    assert totals == [300, 77]
    assert job.result(timeout=120) == {"calls": 2, "failed": 0, "circuits_prepared": 1}


# ---- the metric ---------------------------------------------------------------------------


def test_channel_calls_metric(
    service: RunningService, client: RuntimeService, programs: dict[str, str]
) -> None:
    """``pqr_channel_calls_total{outcome}`` on ``/metrics`` counts answered and failed calls."""
    before = channel_metric(service.url)
    job = client.run(programs["echo"], AER, {})
    with client.open_channel(job) as channel:
        for i in range(3):
            channel.call(i)
        with pytest.raises(RuntimeCallFailed):
            channel.call({"fail": "counted"})
    job.result(timeout=120)
    after = channel_metric(service.url)
    assert after["answered"] - before.get("answered", 0) == 3
    assert after["call_failed"] - before.get("call_failed", 0) == 1
