"""The interim-result websocket at the frame level: spec/runtime-api.md §5, checklist items 45-53,
the per-job delivery cursor of plain connections, and ``?after=SEQ`` resume (docs/internals.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from server_helpers import PUBLISHER, SLEEPER, Api
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect


def open_stream(api: Api, job_id: str, after: int | None = None, token: str | None = None) -> Any:
    url = f"{api.ws}/stream/jobs/{job_id}" + (f"?after={after}" if after is not None else "")
    headers = {"X-Access-Token": token if token is not None else api.token}
    return connect(url, additional_headers=headers, open_timeout=60, close_timeout=10)


def read_until_closed(ws: ClientConnection, timeout: float = 120) -> tuple[list[str], int | None]:
    """Every frame until the server closes, and the close code it sent."""
    frames: list[str] = []
    try:
        while True:
            frames.append(str(ws.recv(timeout=timeout)))
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd else None


def iterations(frames: list[str]) -> list[int]:
    return [json.loads(frame)["iteration"] for frame in frames]


def test_ack_then_messages_in_order_then_1000(alice: Api) -> None:
    """Items 45, 46, 48, and 49 for later connections: each message is delivered once."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 3, "sleep": 0.2})
    with open_stream(alice, job_id) as ws:
        frames, code = read_until_closed(ws)
    assert frames[0] == "ACK"
    assert iterations(frames[1:]) == [0, 1, 2]
    assert code == 1000
    assert alice.job(job_id)["status"] == "COMPLETED"
    for _ in range(2):  # every reconnect (websocket-client >= 1.9 makes five) gets ACK + 1000
        with open_stream(alice, job_id) as ws:
            assert read_until_closed(ws) == (["ACK"], 1000)


def test_token_is_required(alice: Api) -> None:
    """The upgrade request must carry a valid X-Access-Token."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 0})
    for token in ("", "not-a-token"):
        with pytest.raises(InvalidStatus) as info:
            open_stream(alice, job_id, token=token)
        assert info.value.response.status_code == 403


def test_messages_published_before_the_socket_opened(alice: Api) -> None:
    """Item 47: a connection opened after the program started publishing still gets them all."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 3, "sleep": 0.3})
    alice.wait_for(job_id, lambda j: j["message_count"] >= 1)
    with open_stream(alice, job_id) as ws:
        frames, code = read_until_closed(ws)
    assert frames[0] == "ACK" and iterations(frames[1:]) == [0, 1, 2] and code == 1000


def test_finished_job_replays_nothing_after_the_grace(cap_user: Api) -> None:
    """Item 49: a job that ended before its first plain connection (grace 0 on this service)."""
    job_id = cap_user.run(cap_user.upload(PUBLISHER), {"iterations": 3})
    cap_user.wait(job_id)
    with open_stream(cap_user, job_id) as ws:
        assert read_until_closed(ws) == (["ACK"], 1000)


def test_cancel_while_streaming(alice: Api) -> None:
    """Item 51: after a cancel the server stops sending and closes with 1000."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 200, "sleep": 0.05})
    with open_stream(alice, job_id) as ws:
        assert ws.recv(timeout=120) == "ACK"
        first = [ws.recv(timeout=120), ws.recv(timeout=120)]
        assert alice.request("POST", f"/jobs/{job_id}/cancel").status_code == 204
        rest, code = read_until_closed(ws)
    assert code == 1000
    assert len(first + rest) < 200
    assert alice.job(job_id)["status"] == "CANCELLED"


def test_dropped_plain_connection_resumes_without_duplicates(alice: Api) -> None:
    """Item 52: a connection that ends abnormally (1011) and a reconnect: each message once."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 4, "sleep": 0.8})
    with open_stream(alice, job_id) as ws:
        assert ws.recv(timeout=120) == "ACK"
        first = [str(ws.recv(timeout=120)), str(ws.recv(timeout=120))]
        ws.close(code=1011)
    with open_stream(alice, job_id) as ws:
        frames, code = read_until_closed(ws)
    assert frames[0] == "ACK" and code == 1000
    assert iterations(first + frames[1:]) == [0, 1, 2, 3]


def test_resume_after_seq(alice: Api) -> None:
    """``?after=SEQ``: envelopes with sequence numbers, exactly once across reconnects; replay of a
    finished job; and resume connections do not move the plain cursor."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 5, "sleep": 0.2})
    with open_stream(alice, job_id, after=0) as ws:
        assert ws.recv(timeout=120) == "ACK"
        first = [json.loads(ws.recv(timeout=120)) for _ in range(2)]
    assert [e["seq"] for e in first] == [1, 2]
    with open_stream(alice, job_id, after=first[-1]["seq"]) as ws:
        frames, code = read_until_closed(ws)
    assert frames[0] == "ACK" and code == 1000
    rest = [json.loads(f) for f in frames[1:]]
    assert [e["seq"] for e in first + rest] == [1, 2, 3, 4, 5]
    assert [json.loads(e["message"]) for e in first + rest] == [{"iteration": i} for i in range(5)]
    with open_stream(alice, job_id, after=3) as ws:
        frames, code = read_until_closed(ws)
    assert [json.loads(f)["seq"] for f in frames[1:]] == [4, 5] and code == 1000
    with open_stream(alice, job_id) as ws:  # the plain stream has its own cursor
        frames, code = read_until_closed(ws)
    assert iterations(frames[1:]) == [0, 1, 2, 3, 4]


def test_unknown_or_foreign_job_gets_ack_and_1000(alice: Api, bob: Api) -> None:
    """Finished or unknown job: ACK, close 1000; another user's job looks unknown."""
    job_id = alice.run(alice.upload(PUBLISHER), {"iterations": 2})
    for api, target in ((alice, "no-such-job"), (bob, job_id)):
        with open_stream(api, target) as ws:
            assert read_until_closed(ws) == (["ACK"], 1000)
        with open_stream(api, target, after=0) as ws:
            assert read_until_closed(ws) == (["ACK"], 1000)
    with pytest.raises(InvalidStatus):
        open_stream(alice, job_id, after=-1)


def test_socket_opened_while_queued_stays_open(cap_user: Api) -> None:
    """Item 53: the socket of a QUEUED job answers pings and streams once the job runs."""
    sleeper = cap_user.upload(SLEEPER)
    blockers = [cap_user.run(sleeper) for _ in range(3)]
    for job_id in blockers:
        cap_user.wait_running(job_id)
    job_id = cap_user.run(cap_user.upload(PUBLISHER), {"iterations": 3})
    with open_stream(cap_user, job_id) as ws:
        assert ws.recv(timeout=120) == "ACK"
        assert ws.ping().wait(30)
        assert cap_user.job(job_id)["status"] == "QUEUED"
        for blocker in blockers:
            cap_user.request("POST", f"/jobs/{blocker}/cancel")
        frames, code = read_until_closed(ws)
    assert iterations(frames) == [0, 1, 2] and code == 1000
    assert cap_user.job(job_id)["status"] == "COMPLETED"
