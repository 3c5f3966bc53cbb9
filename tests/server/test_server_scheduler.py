"""The scheduler's hot path without a web server: interim-message batches, slots reserved for jobs
created already claimed, and the token cache in front of the store (a real SQLite store each)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from database_helpers import add_program
from sqlalchemy import delete

from prefect_qiskit_runtime.core.models import JobState
from prefect_qiskit_runtime.server.auth import TokenCache
from prefect_qiskit_runtime.server.broker import Broker
from prefect_qiskit_runtime.server.config import ServiceConfig
from prefect_qiskit_runtime.server.executors.base import Executor, ExecutorEvents, JobSpec
from prefect_qiskit_runtime.server.scheduler import Scheduler
from prefect_qiskit_runtime.server.store import Answer, ClaimedJob, Store, Token, hash_token


class _Idle(Executor):
    """An executor that accepts jobs and never runs them (the scheduler's side is under test)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.submitted: list[str] = []

    async def start(self, events: ExecutorEvents) -> None:
        return None

    async def submit(self, spec: JobSpec) -> None:
        self.submitted.append(spec.job_id)

    async def cancel(self, job_id: str) -> bool:
        return False

    async def shutdown(self) -> None:
        return None


def _setup(tmp_path: Path, capacity: int = 2) -> tuple[Store, str, str, Scheduler, _Idle]:
    config = ServiceConfig(home=tmp_path, max_message_bytes=64, load_builtin_programs=False)
    store = Store(config.db_url)
    store.ensure_system_user()
    user, _ = store.add_user("u", can_upload=True)
    program_id = add_program(store, user.id, data="def main(backend, user_messenger):\n    pass\n")
    executor = _Idle(capacity)
    return store, user.id, program_id, Scheduler(store, Broker(), executor, config), executor


def _create(
    store: Store, owner: str, program_id: str, claim_for: str | None = None
) -> tuple[Answer, ClaimedJob | None]:
    return store.create_job(
        owner_id=owner,
        program_id=program_id,
        backend="aer_simulator",
        params="{}",
        hub="local",
        group="default",
        project="main",
        log_level=None,
        runtime=None,
        claim_for=claim_for,
    )


def test_message_batches_are_stored_once_and_announced_in_order(tmp_path: Path) -> None:
    store, owner, program_id, scheduler, _ = _setup(tmp_path)
    answer, _ = _create(store, owner, program_id)
    job_id = answer.body["id"]

    async def scenario() -> list[tuple[int, str]]:
        scheduler.broker.bind(asyncio.get_running_loop())
        with scheduler.broker.subscribe(job_id) as sub:
            await scheduler.on_messages(job_id, ['"a"', '"' + "x" * 100 + '"', '"b"'])
            await scheduler.on_messages(job_id, ['"c"'])
            await scheduler.on_messages("no-such-job", ['"lost"'])
            return [(e.seq, e.data) for e in (sub.queue.get_nowait() for _ in range(3))]

    announced = asyncio.run(scenario())
    expected = [(1, '"a"'), (2, '"b"'), (3, '"c"')]
    assert announced == expected  # the oversized one is dropped before numbering: no gap
    assert store.messages_after(job_id, 0) == expected
    assert scheduler.dropped_messages == 1
    job = store.get_job(job_id)
    assert job is not None and job.message_count == 3


def test_a_job_is_created_claimed_only_behind_an_empty_queue(tmp_path: Path) -> None:
    store, owner, program_id, _, _ = _setup(tmp_path)
    first, claimed = _create(store, owner, program_id, claim_for="me")
    assert claimed is not None and claimed.job.id == first.body["id"]
    assert claimed.program_source.startswith("def main")
    job = store.get_job(first.body["id"])
    assert job is not None and job.state is JobState.RUNNING and job.instance_id == "me"
    assert job.started == job.created
    queued, none = _create(store, owner, program_id)
    assert none is None
    # An older job waits in the queue: a new one queues behind it instead of overtaking it.
    behind, not_claimed = _create(store, owner, program_id, claim_for="me")
    assert not_claimed is None
    assert [c.job.id for c in store.claim_jobs("me", 5)] == [
        queued.body["id"],
        behind.body["id"],
    ]


def test_reserved_slots_never_exceed_capacity(tmp_path: Path) -> None:
    store, owner, program_id, scheduler, executor = _setup(tmp_path, capacity=2)

    async def scenario() -> None:
        scheduler._loop = asyncio.get_running_loop()
        assert scheduler.reserve_slot() and scheduler.reserve_slot()
        assert not scheduler.reserve_slot()  # both slots are promised
        assert scheduler._reserve(None) == 0  # the dispatcher gets none either
        _, claimed = _create(store, owner, program_id, claim_for=scheduler.instance_id)
        assert claimed is not None
        scheduler.take_reserved(claimed)
        scheduler.take_reserved(None)  # the second slot went unused
        await asyncio.sleep(0)  # the hand-over callbacks queued by take_reserved run first
        await asyncio.gather(*scheduler._handovers)
        assert scheduler._reserved == 0
        assert executor.submitted == [claimed.job.id]
        assert scheduler.running_count == 1
        assert scheduler.reserve_slot()
        assert not scheduler.reserve_slot()
        scheduler._release(1)

    asyncio.run(scenario())


def test_token_cache_expires_is_bounded_and_forgets(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'runtime.db'}")
    now = [0.0]
    cache = TokenCache(store, ttl=30, max_entries=2, clock=lambda: now[0])
    alice, token_a = store.add_user("a")
    tokens = [store.add_user(name)[1] for name in ("b", "c", "d")]
    assert cache.lookup("unknown") is None and len(cache) == 0  # failures are not remembered
    found = cache.lookup(token_a)
    assert found is not None and found.id == alice.id
    with store.write() as s:
        s.execute(delete(Token).where(Token.token_hash == hash_token(token_a)))
    now[0] = 29.0
    assert cache.lookup(token_a) is not None  # still trusted within its lifetime
    now[0] = 30.0
    assert cache.lookup(token_a) is None  # expired: the store says the token is gone
    for token in tokens:
        assert cache.lookup(token) is not None
    assert len(cache) == 2  # bounded: the oldest entry made room
    assert cache.cached(tokens[0]) is None
    assert cache.cached(tokens[1]) is not None and cache.cached(tokens[2]) is not None
    cache.forget(tokens[1])
    assert cache.cached(tokens[1]) is None and cache.cached(tokens[2]) is not None
    assert cache.cached("x" * 1000) is None
    cache.clear()
    assert len(cache) == 0


def test_dispatch_fills_only_free_slots(tmp_path: Path) -> None:
    store, owner, program_id, scheduler, executor = _setup(tmp_path, capacity=1)
    ids = [_create(store, owner, program_id)[0].body["id"] for _ in range(3)]

    async def scenario() -> None:
        scheduler._loop = asyncio.get_running_loop()
        await scheduler._dispatch()

    asyncio.run(scenario())
    assert executor.submitted == ids[:1]
    assert store.job_statuses(ids) == {
        ids[0]: JobState.RUNNING.value,
        ids[1]: JobState.QUEUED.value,
        ids[2]: JobState.QUEUED.value,
    }
