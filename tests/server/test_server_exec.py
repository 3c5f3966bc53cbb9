"""The local executor driven directly: real warm parent, real job processes, real programs.

The ``Recorder`` below is the consumer of the executor's events (what the scheduler would be), not a
mock of any part: it records what the executor reports and lets a test wait for a job's end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from prefect_qiskit_runtime.server.executors.base import JobSpec, Outcome
from prefect_qiskit_runtime.server.executors.local import LocalExecutor

pytestmark = [pytest.mark.asyncio(loop_scope="module")]

TIMEOUT = 60.0


class Recorder:
    """Records executor events in order and lets tests await a job's outcome.

    ``slow[job_id]`` makes it a slow consumer of that job's messages: it takes that many seconds
    per message, as a store that writes each message in its own transaction would.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []
        self.outcomes: dict[str, asyncio.Future[Outcome]] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.messages: dict[str, list[str]] = {}
        self.message_arrived: dict[str, asyncio.Event] = {}
        self.slow: dict[str, float] = {}

    def _future(self, job_id: str) -> asyncio.Future[Outcome]:
        if job_id not in self.outcomes:
            self.outcomes[job_id] = asyncio.get_running_loop().create_future()
        return self.outcomes[job_id]

    def _event(self, table: dict[str, asyncio.Event], job_id: str) -> asyncio.Event:
        return table.setdefault(job_id, asyncio.Event())

    async def on_started(self, job_id: str) -> None:
        self.events.append(("started", job_id, None))
        self._event(self.started, job_id).set()

    async def on_messages(self, job_id: str, data: list[str]) -> None:
        assert data, "on_messages called without messages"
        self.events.append(("messages", job_id, list(data)))
        # Suspend (at least once): the executor must still deliver batches one at a time, in order.
        await asyncio.sleep(self.slow.get(job_id, 0.0) * len(data))
        self.messages.setdefault(job_id, []).extend(data)
        self._event(self.message_arrived, job_id).set()

    async def on_finished(self, job_id: str, outcome: Outcome) -> None:
        self.events.append(("finished", job_id, outcome))
        fut = self._future(job_id)
        assert not fut.done(), f"on_finished called twice for {job_id}"
        fut.set_result(outcome)

    async def outcome(self, job_id: str, timeout: float = TIMEOUT) -> Outcome:
        return await asyncio.wait_for(asyncio.shield(self._future(job_id)), timeout)

    async def first_message(self, job_id: str, timeout: float = TIMEOUT) -> str:
        await asyncio.wait_for(self._event(self.message_arrived, job_id).wait(), timeout)
        return self.messages[job_id][0]

    def kinds(self, job_id: str) -> list[str]:
        return [kind for kind, jid, _ in self.events if jid == job_id]

    def batches(self, job_id: str) -> list[list[str]]:
        found = [data for kind, jid, data in self.events if jid == job_id and kind == "messages"]
        return [list(map(str, batch)) for batch in found if isinstance(batch, list)]


class Runner:
    """Submits programs to one executor with fresh working directories."""

    def __init__(self, executor: LocalExecutor, events: Recorder, root: Path) -> None:
        self.executor = executor
        self.events = events
        self.root = root
        self.count = 0

    async def submit(
        self,
        source: str,
        params: dict[str, object] | None = None,
        *,
        backend: str = "aer_simulator",
        log_level: str | None = None,
        memory_limit_mb: int | None = None,
        log_limit_bytes: int = 1_000_000,
    ) -> str:
        job_id = self.next_id()
        workdir = self.root / job_id
        workdir.mkdir()
        await self.executor.submit(
            JobSpec(
                job_id=job_id,
                program_source=source,
                params_json=json.dumps(params or {}),
                backend_name=backend,
                log_level=log_level,
                workdir=workdir,
                memory_limit_mb=memory_limit_mb,
                log_limit_bytes=log_limit_bytes,
            )
        )
        return job_id

    def next_id(self) -> str:
        """The id of the next submitted job (so a test can prepare for it)."""
        self.count += 1
        return f"job-{self.count}"

    def peek_id(self) -> str:
        return f"job-{self.count + 1}"

    async def run(
        self, source: str, params: dict[str, object] | None = None, **kw: object
    ) -> Outcome:
        job_id = await self.submit(source, params, **kw)  # type: ignore[arg-type]
        return await self.events.outcome(job_id)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie waiting for an adoptive parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def children_of(ppid: int) -> set[int]:
    """Processes whose parent is ``ppid`` (zombies included)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == ppid:
                found.add(int(entry))
    return found


async def wait_until(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runner(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Runner]:
    events = Recorder()
    executor = LocalExecutor(2, max_message_bytes=1024 * 1024)
    await executor.start(events)
    await executor.wait_ready(120)
    yield Runner(executor, events, tmp_path_factory.mktemp("exec-jobs"))
    await executor.shutdown()


PUBLISHER = """
def main(backend, user_messenger, count=3):
    for i in range(count):
        user_messenger.publish({"i": i, "z": 1j})
    user_messenger.publish("first", final=True)
    user_messenger.publish("foo", final=True)
"""


async def test_completed_with_messages_in_order(runner: Runner) -> None:
    job_id = await runner.submit(PUBLISHER, {"count": 5})
    outcome = await runner.events.outcome(job_id)
    assert outcome.status == "COMPLETED", outcome
    assert outcome.result == '"foo"'  # the last final publish wins
    decoded = [json.loads(m) for m in runner.events.messages[job_id]]
    assert [m["i"] for m in decoded] == [0, 1, 2, 3, 4]
    assert decoded[0]["z"] == {"__type__": "complex", "__value__": [0.0, 1.0]}
    kinds = runner.events.kinds(job_id)
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert set(kinds[1:-1]) == {"messages"}
    assert float(outcome.details["cpu_seconds"]) > 0  # type: ignore[arg-type]
    # The job finishes on its result and EOF; the reap follows (and kills what is left).
    pid = int(outcome.details["pid"])  # type: ignore[call-overload]
    assert await wait_until(lambda: process_gone(pid))


BURST = """
def main(backend, user_messenger, count):
    for i in range(count):
        user_messenger.publish({"i": i})
    return "done"
"""


async def test_burst_of_messages_reaches_a_slow_consumer(runner: Runner) -> None:
    """Regression: the connection of an exited process was closed with frames still unread.

    The process publishes 3,000 messages in a burst and exits at once; the consumer takes
    0.5 ms per message, so it is still busy well after the process has been reaped.
    """
    job_id = runner.peek_id()
    runner.events.slow[job_id] = 0.0005
    assert await runner.submit(BURST, {"count": 3000}) == job_id
    outcome = await runner.events.outcome(job_id)
    assert outcome.status == "COMPLETED", outcome
    assert outcome.result == '"done"'
    assert [json.loads(m)["i"] for m in runner.events.messages[job_id]] == list(range(3000))
    batches = runner.events.batches(job_id)
    assert len(batches) < 3000  # messages already read travel together
    assert runner.events.kinds(job_id)[-1] == "finished"


ESCAPER = """
import os, time

def main(backend, user_messenger):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()  # out of the job's session: the reap's killpg does not reach it
        os.write(ready_w, b"1")
        time.sleep(60)
        os._exit(0)
    # Return only once the child has left the session: otherwise the reap may kill it first.
    os.read(ready_r, 1)
    return pid
"""


async def test_connection_held_by_an_escaped_process_is_closed(runner: Runner) -> None:
    """A process that left the job's session holds its connection open: it is stuck, and closed."""
    outcome = await runner.run(ESCAPER)
    escaped = int(outcome.result or "0")
    try:
        assert outcome.status == "COMPLETED", outcome
        assert escaped > 0 and not process_gone(escaped)
    finally:
        if escaped > 0:
            os.kill(escaped, signal.SIGKILL)


EARLY_RESULT = """
import json, os, socket, struct, time

def main(backend, user_messenger):
    for fd in os.listdir("/proc/self/fd"):
        if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
            conn = socket.socket(fileno=int(fd))
            body = json.dumps({"t": "result", "data": '"early"'}).encode()
            conn.sendall(struct.pack("!I", len(body)) + body)
            conn.close()
    time.sleep(120)
"""


async def test_process_outliving_its_result_is_killed(runner: Runner) -> None:
    outcome = await runner.run(EARLY_RESULT)
    assert outcome.status == "COMPLETED", outcome
    assert outcome.result == '"early"'
    pid = int(outcome.details["pid"])  # type: ignore[call-overload]
    assert await wait_until(lambda: process_gone(pid))


async def test_return_value_and_null_results(runner: Runner) -> None:
    returned = "def main(backend, user_messenger):\n    user_messenger.publish(1, final=True)\n"
    returned += "    return {'answer': 42, 'backend': backend.name}\n"
    nothing = "def main(backend, user_messenger, **kwargs):\n    assert kwargs == {'x': 1}\n"
    params = {
        "x": 1,
        "_ParameterNamespace__metadata": {},
        "_ParameterNamespace__program_params": {},
    }
    first, second = await asyncio.gather(
        runner.run(returned, backend="fake_5q_device"), runner.run(nothing, params)
    )
    assert first.status == "COMPLETED"
    assert json.loads(first.result or "") == {"answer": 42, "backend": "fake_5q_device"}
    assert second.status == "COMPLETED", second
    assert second.result == "null"


async def test_program_exception_fails_with_traceback(runner: Runner) -> None:
    source = (
        "import os\n\ndef main(backend, user_messenger, **kwargs):\n    return kwargs['missing']\n"
    )
    outcome = await runner.run(source)
    assert outcome.status == "FAILED"
    assert outcome.error is not None
    assert "KeyError: 'missing'" in outcome.error
    assert outcome.error.startswith("Traceback (most recent call last):")
    assert 'program.py", line 4, in main' in outcome.error
    assert "return kwargs['missing']" in outcome.error
    assert "runner.py" not in outcome.error  # the runner's own frames are not the author's concern
    assert outcome.details["exception"] == "KeyError"
    assert outcome.details["reason_code"] == "PROGRAM_ERROR"


async def test_bad_signature_and_missing_main_fail(runner: Runner) -> None:
    no_main, wrong_args = await asyncio.gather(
        runner.run("x = 1\n"),
        runner.run("def main(backend, user_messenger):\n    pass\n", {"a": 1}),
    )
    assert no_main.status == "FAILED" and "does not define main" in (no_main.error or "")
    assert wrong_args.status == "FAILED"
    assert "TypeError" in (wrong_args.error or "") and "'a'" in (wrong_args.error or "")


SLEEPER = """
import os, time

def main(backend, user_messenger):
    user_messenger.publish(os.getpid())
    time.sleep(120)
"""


async def test_cancel_kills_the_process(runner: Runner) -> None:
    job_id = await runner.submit(SLEEPER)
    pid = json.loads(await runner.events.first_message(job_id))
    assert not process_gone(pid)
    begin = time.monotonic()
    assert await runner.executor.cancel(job_id) is True
    outcome = await runner.events.outcome(job_id, timeout=5)
    assert outcome.status == "CANCELLED"
    assert time.monotonic() - begin < 5  # an upper bound, not a speed claim
    assert process_gone(pid)
    assert await runner.executor.cancel(job_id) is False  # finished jobs are unknown


async def test_killed_or_crashed_job_process_is_lost(runner: Runner) -> None:
    job_id = await runner.submit(SLEEPER)
    pid = json.loads(await runner.events.first_message(job_id))
    os.kill(pid, signal.SIGKILL)
    outcome = await runner.events.outcome(job_id)
    assert outcome.status == "LOST"
    assert "SIGKILL" in (outcome.error or "")
    assert outcome.details["signal"] == "SIGKILL"
    assert outcome.details["reason_code"] == "WORKER_LOST"

    crash = "import ctypes\n\ndef main(backend, user_messenger):\n    ctypes.string_at(0)\n"
    crashed = await runner.run(crash)
    assert crashed.status == "LOST"
    assert "SIGSEGV" in (crashed.error or "")


async def test_unusable_workdir_is_lost_not_failed(runner: Runner, tmp_path: Path) -> None:
    job_id = "no-workdir"
    await runner.executor.submit(
        JobSpec(job_id, PUBLISHER, "{}", "aer_simulator", None, tmp_path / "missing")
    )
    outcome = await runner.events.outcome(job_id)
    assert outcome.status == "LOST"
    assert "could not be prepared" in (outcome.error or "")
    assert outcome.details["reason_code"] == "WORKER_LOST"


async def test_processes_left_behind_by_a_job_are_killed(runner: Runner) -> None:
    source = (
        "import subprocess\n\ndef main(backend, user_messenger):\n"
        "    return subprocess.Popen(['sleep', '120']).pid\n"
    )
    outcome = await runner.run(source)
    assert outcome.status == "COMPLETED"
    assert await wait_until(lambda: process_gone(int(outcome.result or "0")))


async def test_memory_limit_breach_fails(runner: Runner) -> None:
    source = "def main(backend, user_messenger):\n    return len(bytearray(2 * 1024**3))\n"
    outcome = await runner.run(source, memory_limit_mb=300)
    assert outcome.status == "FAILED", outcome
    assert "MemoryError" in (outcome.error or "")
    assert outcome.details["memory_limit_exceeded"] is True
    assert outcome.details["reason_code"] == "MEMORY_LIMIT"
    assert "memory limit of 300 MB" in (outcome.error or "")
    # The same allocation without a limit works (it is the limit that stopped it).
    small = "def main(backend, user_messenger):\n    return len(bytearray(100 * 1024**2))\n"
    assert (await runner.run(small, memory_limit_mb=300)).result == str(100 * 1024**2)


LOGGER = """
import ctypes, logging, os, subprocess, sys, warnings

def main(backend, user_messenger):
    ctypes.CDLL(None).printf(b"from printf, in the C library's buffer\\n")
    print("to stdout")
    print("to stderr", file=sys.stderr)
    os.write(1, b"raw fd write\\n")
    subprocess.run(["echo", "from a child process"], check=True)
    warnings.warn("careful now")
    log = logging.getLogger("my.program")
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")
    log.error("error line")
"""


async def test_logs_capture_output_with_level_filter(runner: Runner) -> None:
    info, error, default = await asyncio.gather(
        runner.run(LOGGER, log_level="info"),
        runner.run(LOGGER, log_level="ERROR"),
        runner.run(LOGGER),
    )
    for outcome in (info, error, default):
        assert outcome.status == "COMPLETED", outcome
        lines = ("to stdout", "to stderr", "raw fd write", "from a child process", "from printf")
        for line in lines:
            assert line in outcome.logs
        assert "UserWarning: careful now" in outcome.logs
        assert "error line" in outcome.logs
        assert "debug line" not in outcome.logs
    assert "info line" in info.logs and "warning line" in info.logs
    assert "info line" not in error.logs and "warning line" not in error.logs
    assert "info line" not in default.logs and "warning line" in default.logs


async def test_logs_are_capped_with_a_marker(runner: Runner) -> None:
    source = "def main(backend, user_messenger):\n    for i in range(5000):\n        print(i)\n"
    outcome = await runner.run(source, log_limit_bytes=1000)
    assert outcome.status == "COMPLETED"
    body, marker = outcome.logs.rstrip("\n").rsplit("\n", 1)
    assert len(body.encode()) <= 1000
    assert body.startswith("0\n1\n2\n")
    assert "log truncated" in marker


async def test_oversized_message_fails_the_job(runner: Runner) -> None:
    source = "def main(backend, user_messenger):\n    user_messenger.publish('x' * 2_000_000)\n"
    outcome = await runner.run(source)
    assert outcome.status == "FAILED"
    assert "MessageTooLargeError" in (outcome.error or "")
    assert "larger than the limit of 1048576 bytes" in (outcome.error or "")


FD_LISTER = """
import os

def main(backend, user_messenger, sizes_mb=()):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    allocated = {}
    for mb in sizes_mb:
        try:
            allocated[str(mb)] = len(bytearray(mb * 1024 * 1024)) > 0
        except MemoryError:
            allocated[str(mb)] = False
    return {"fds": fds, "ppid": os.getppid(), "sid": os.getsid(0), "pid": os.getpid(),
            "cwd": os.getcwd(), "allocated": allocated}
"""


async def test_isolation_fresh_executor(tmp_path: Path) -> None:
    """No inherited service sockets; queued until warm; own session and cwd; shutdown kills.

    The same holds for a job given to a warmed-up spare, and its memory limit too.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    inode = f"socket:[{os.fstat(listener.fileno()).st_ino}]"
    events = Recorder()
    executor = LocalExecutor(1, warm_up="always")
    jobs = Runner(executor, events, tmp_path)
    try:
        await executor.start(events)
        job_id = await jobs.submit(FD_LISTER)  # before the warm parent is ready: queued
        never = await jobs.submit(SLEEPER)
        assert await executor.cancel(never) is True
        outcome = await events.outcome(job_id, timeout=120)
        assert (await events.outcome(never)).status == "CANCELLED"
        assert not (tmp_path / never / "job.log").exists()  # it never ran
        assert outcome.status == "COMPLETED", outcome
        info = json.loads(outcome.result or "")
        parent_fds = {
            os.readlink(f"/proc/{info['ppid']}/fd/{fd}")
            for fd in os.listdir(f"/proc/{info['ppid']}/fd")
        }
        assert inode not in parent_fds
        assert info["ppid"] == executor.parent_info["pid"]

        def assert_isolated(info: dict[str, Any], job_id: str) -> None:
            targets = set(info["fds"].values())
            assert inode not in targets
            assert [t for t in targets if t.startswith("socket:")] != []  # its report channel
            assert len(targets) <= 6  # stdin, stdout, stderr, report socket, the listing's dir fd
            assert info["fds"]["1"] == info["fds"]["2"] == str(tmp_path / job_id / "job.log")
            assert info["sid"] == info["pid"]  # a session (and process group) of its own
            assert info["cwd"] == str(tmp_path / job_id)

        assert_isolated(info, job_id)
        # Once idle, the warm parent keeps a prepared, warmed-up spare for the free slot; the
        # next job runs in it, just as isolated and limited.
        assert await wait_until(lambda: True in executor.spares_ready.values(), timeout=60)
        spares = set(executor.spares_ready)
        assert spares <= children_of(info["ppid"])
        in_spare = await jobs.run(FD_LISTER, {"sizes_mb": [100, 2048]}, memory_limit_mb=300)
        assert in_spare.status == "COMPLETED", in_spare
        assert in_spare.details["process"] == "warm"
        info = json.loads(in_spare.result or "")
        assert info["pid"] in spares
        assert_isolated(info, f"job-{jobs.count}")
        assert info["allocated"] == {"100": True, "2048": False}

        running = await jobs.submit(SLEEPER)
        pid = json.loads(await events.first_message(running))
        await executor.shutdown()
        assert await wait_until(lambda: process_gone(pid))
        assert process_gone(info["ppid"]) or await wait_until(lambda: process_gone(info["ppid"]))
        assert "finished" not in events.kinds(running)  # shutdown reports nothing for running jobs
    finally:
        listener.close()
        await executor.shutdown()


async def test_warm_parent_death_loses_jobs_and_restarts(runner: Runner) -> None:
    job_id = await runner.submit(SLEEPER)
    child = json.loads(await runner.events.first_message(job_id))
    parent = runner.executor.parent_info["pid"]
    os.kill(parent, signal.SIGKILL)
    outcome = await runner.events.outcome(job_id)
    assert outcome.status == "LOST"
    assert "warm parent" in (outcome.error or "")
    assert await wait_until(lambda: process_gone(child))
    # A new warm parent takes the next job.
    after = await runner.run(PUBLISHER, {"count": 1})
    assert after.status == "COMPLETED"
    assert runner.executor.parent_info["pid"] != parent
