"""The store on a real SQLite file and on PostgreSQL: claims by several instances, recovery of dead
instances' jobs, idempotency under concurrency, the plain-stream cursor, hashed tokens, and the
schema migrations (a database made before them is adopted with its rows)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from database_helpers import add_program
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.pool import NullPool

from prefect_qiskit_runtime.core.models import JobState, ReasonCode
from prefect_qiskit_runtime.server import migrations
from prefect_qiskit_runtime.server.config import sqlite_url
from prefect_qiskit_runtime.server.store import (
    Answer,
    DatabaseUnavailable,
    Instance,
    Job,
    Store,
    create_user_token,
    utcnow,
)
from prefect_qiskit_runtime.server.store.tables import JOBS, Base


@pytest.fixture
def db(database_url: str) -> str:
    """An empty database: SQLite, then PostgreSQL (``database_url`` in ``tests/conftest.py``)."""
    return database_url


def _program(store: Store, owner: str) -> str:
    return add_program(store, owner)


def _jobs(store: Store, owner: str, program_id: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        answer, _ = store.create_job(**_job_fields(owner, program_id))
        ids.append(answer.body["id"])
    return ids


def _job_fields(owner: str, program_id: str) -> dict[str, Any]:
    return {
        "owner_id": owner,
        "program_id": program_id,
        "backend": "aer_simulator",
        "params": "{}",
        "hub": "local",
        "group": "default",
        "project": "main",
        "log_level": None,
        "runtime": None,
    }


def test_every_job_is_claimed_once_by_competing_instances(db: str) -> None:
    """Four instances (own engines, own threads) drain one queue: no job twice, oldest first."""
    setup = Store(db)
    user, _ = setup.add_user("u", can_upload=True)
    ids = _jobs(setup, user.id, _program(setup, user.id), 60)
    claims: dict[str, list[str]] = {}

    def drain(instance: str) -> None:
        store = Store(db, create=False)
        got: list[str] = []
        while batch := store.claim_jobs(instance, 3):
            got += [c.job.id for c in batch]
        claims[instance] = got
        store.dispose()

    threads = [threading.Thread(target=drain, args=(f"i{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [job_id for got in claims.values() for job_id in got]
    assert sorted(claimed) == sorted(ids)
    for got in claims.values():  # each instance saw the queue in submission order
        assert got == sorted(got, key=ids.index)
    assert setup.status_counts() == {JobState.RUNNING.value: 60}


def test_claim_across_processes(db: str, tmp_path: Path) -> None:
    """Two OS processes claiming from one SQLite file never share a job."""
    setup = Store(db)
    user, _ = setup.add_user("u")
    ids = _jobs(setup, user.id, _program(setup, user.id), 40)
    script = (
        "import sys\n"
        "from prefect_qiskit_runtime.server.store import Store\n"
        "s = Store(sys.argv[1], create=False)\n"
        "while batch := s.claim_jobs(sys.argv[2], 2):\n"
        "    print('\\n'.join(c.job.id for c in batch), flush=True)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, db, f"p{n}"], stdout=subprocess.PIPE, text=True
        )
        for n in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outputs[0] + outputs[1]) == sorted(ids)


def test_recover_fails_only_jobs_of_dead_instances(db: str) -> None:
    store = Store(db)
    user, _ = store.add_user("u")
    program = _program(store, user.id)
    ids = _jobs(store, user.id, program, 4)
    store.register_instance("me")
    store.register_instance("alive")  # this very process: alive
    with store.write() as s:
        # A process that no longer exists, on this host.
        s.add(Instance(id="dead", hostname=os.uname().nodename, pid=2**22 + 7, started=utcnow()))
        # An instance on another host whose lease ran out.
        s.add(
            Instance(
                id="stale",
                hostname="elsewhere",
                pid=1,
                started=utcnow(),
                heartbeat=utcnow() - timedelta(minutes=5),
            )
        )
    owners = ["me", "alive", "dead", "stale"]
    for job_id, owner in zip(ids, owners, strict=True):
        assert store.claim_jobs(owner, 1)[0].job.id == job_id
    failed = store.recover("me", lease_seconds=60)
    assert sorted(failed) == sorted([ids[2], ids[3]])
    for job_id, owner in zip(ids, owners, strict=True):
        job = store.get_job(job_id)
        assert job is not None
        if owner in {"dead", "stale"}:
            assert job.status == "FAILED" and job.reason_code == "SERVICE_RESTARTED"
            assert "SERVICE_RESTARTED" in (job.error or "")
        else:
            assert job.status == "RUNNING"
    assert store.recover("me") == []


def test_finish_never_overwrites_a_cancel(db: str) -> None:
    store = Store(db)
    user, _ = store.add_user("u")
    (job_id,) = _jobs(store, user.id, _program(store, user.id), 1)
    store.claim_jobs("me", 1)
    job, changed = store.cancel_job(job_id, user.id)
    assert changed and job is not None and job.status == "CANCELLED"
    outcome = store.finish_job(job_id, JobState.COMPLETED, result='"late"', logs="printed\n")
    assert not outcome.applied and outcome.status == "CANCELLED"
    job = store.get_job(job_id)
    assert job is not None
    assert job.status == "CANCELLED" and job.result is None and job.logs == "printed\n"
    assert not store.end_running_job(
        job_id, JobState.CANCELLED_RAN_TOO_LONG, ReasonCode.RAN_TOO_LONG, "x"
    )


def test_a_nul_in_what_a_job_printed_does_not_keep_it_running(db: str) -> None:
    """PostgreSQL text cannot hold NUL: the job's end is stored anyway, with U+FFFD for it."""
    store = Store(db)
    user, _ = store.add_user("u")
    first, second = _jobs(store, user.id, _program(store, user.id), 2)
    store.claim_jobs("me", 2)
    assert store.finish_job(first, JobState.FAILED, error="bad\x00", logs="a\x00b\n").applied
    store.cancel_job(second, user.id)
    assert not store.finish_job(second, JobState.COMPLETED, result='"r"', logs="\x00").applied
    failed, cancelled = store.get_job(first), store.get_job(second)
    assert failed is not None and (failed.status, failed.error) == ("FAILED", "bad\ufffd")
    assert failed.logs == "a\ufffdb\n"
    assert cancelled is not None and cancelled.logs == "\ufffd" and cancelled.result is None
    store.dispose()


def test_idempotency_key_under_concurrency(db: str) -> None:
    """Ten writers with one key (separate engines): one job, one answer."""
    setup = Store(db)
    user, _ = setup.add_user("u")
    program = _program(setup, user.id)
    answers: list[Answer] = []

    def submit() -> None:
        store = Store(db, create=False)
        answer, _ = store.create_job(**_job_fields(user.id, program), idempotency_key="key-1")
        answers.append(answer)
        store.dispose()

    threads = [threading.Thread(target=submit) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({a.body["id"] for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    assert setup.list_jobs(user.id, 100, 0)[1] == 1


def test_plain_cursor(db: str) -> None:
    store = Store(db)
    user, _ = store.add_user("u")
    (job_id,) = _jobs(store, user.id, _program(store, user.id), 1)
    assert [store.add_message(job_id, f'"m{i}"') for i in range(3)] == [1, 2, 3]
    assert store.open_plain_cursor(job_id, grace_seconds=10) == 0
    assert store.advance_plain_cursor(job_id, 1)
    assert not store.advance_plain_cursor(job_id, 1)  # a second connection cannot take it again
    assert not store.advance_plain_cursor(job_id, 3)  # nor skip ahead
    store.rewind_plain_cursor(job_id, 1)
    assert store.open_plain_cursor(job_id, grace_seconds=10) == 0
    # A job that ended long before its first plain connection replays nothing.
    (old,) = _jobs(store, user.id, _program_named(store, user.id, "q"), 1)
    store.add_message(old, '"x"')
    with store.write() as s:
        s.execute(
            update(Job)
            .where(Job.id == old)
            .values(status="COMPLETED", ended=utcnow() - timedelta(seconds=60))
        )
    assert store.open_plain_cursor(old, grace_seconds=10) == 1
    assert store.messages_after(old, 0) == [(1, '"x"')]


def _program_named(store: Store, owner: str, name: str) -> str:
    return add_program(store, owner, name=name, data="x", cost=1)


def test_tokens_are_stored_hashed(tmp_path: Path) -> None:
    token = create_user_token(tmp_path, "alice", can_upload=True)
    again = create_user_token(tmp_path, "alice")
    with sqlite3.connect(tmp_path / "runtime.db") as conn:
        dump = "\n".join(conn.iterdump())
        modes = {row[0] for row in conn.execute("PRAGMA journal_mode")}
    assert token not in dump and again not in dump
    assert modes == {"wal"}
    store = Store(sqlite_url(tmp_path / "runtime.db"))
    alice = store.user_for_token(token)
    assert alice is not None and alice.can_upload  # a second token never revokes the right
    assert store.user_for_token(again) is not None
    assert store.user_for_token(token + "x") is None
    assert store.user_for_token("") is None


def test_message_batches_are_numbered_contiguously_across_writers(db: str) -> None:
    store = Store(db)
    user, _ = store.add_user("u")
    (job_id,) = _jobs(store, user.id, _program(store, user.id), 1)
    assert store.add_messages(job_id, []) is None  # nothing to store, nothing numbered
    assert store.add_messages(job_id, ['"a"', '"b"', '"c"']) == 1
    assert store.add_message(job_id, '"d"') == 4

    # Two stores (two connection pools, as two processes would have) write batches at once.
    firsts: list[tuple[int, list[str]]] = []
    lock = threading.Lock()

    def writer(tag: str) -> None:
        other = Store(db)
        for k in range(20):
            batch = [f'"{tag}{k}.{i}"' for i in range(3)]
            first = other.add_messages(job_id, batch)
            assert first is not None
            with lock:
                firsts.append((first, batch))
        other.dispose()

    threads = [threading.Thread(target=writer, args=(t,)) for t in "xy"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = dict(store.messages_after(job_id, 4))
    assert sorted(stored) == list(range(5, 5 + 120))  # no gaps, no duplicates
    for first, batch in firsts:  # each batch landed in one contiguous block, in order
        assert [stored[first + i] for i in range(len(batch))] == batch
    job = store.get_job(job_id)
    assert job is not None and job.message_count == 124
    assert store.add_messages("no-such-job", ['"z"']) is None


# -- the schema migrations -----------------------------------------------------------------------


def _revision(url: str) -> str | None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return migrations.current_revision(conn)
    finally:
        engine.dispose()


def test_migrations_at_head_build_exactly_the_models_schema(db: str) -> None:
    """``upgrade head`` on an empty database gives what the models describe, and is recorded."""
    # Another Alembic user of the same database (a Prefect server's) keeps its own version table.
    engine = create_engine(db, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(text("INSERT INTO alembic_version VALUES ('someone-elses')"))
    Store(db).dispose()
    with engine.connect() as conn:
        opts = {
            "compare_type": True,
            "version_table": migrations.VERSION_TABLE,
            "include_name": lambda name, kind, _: (kind, name) != ("table", "alembic_version"),
        }
        context = MigrationContext.configure(conn, opts=opts)
        assert compare_metadata(context, Base.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("someone-elses",)
        ]
    engine.dispose()
    head = ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()
    assert head == migrations.HEAD
    assert _revision(db) == head


#: The tables of the store before migrations existed (revision 0001).
PRE_MIGRATION_TABLES = (
    "users",
    "tokens",
    "programs",
    "jobs",
    "messages",
    "idempotency_keys",
    "instances",
)


def test_a_database_made_before_migrations_keeps_its_rows(db: str) -> None:
    """A database from ``create_all`` (the store before migrations) is stamped and upgraded."""
    engine = create_engine(db, poolclass=NullPool)
    # What Store(url) did before migrations: create_all of the tables of that time.
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[n] for n in PRE_MIGRATION_TABLES])
    with engine.begin() as conn:  # indexes the models gained after that time (revision 0003)
        conn.execute(text("DROP INDEX ix_jobs_owner_ended"))
    engine.dispose()
    old = Store(db, create=False)
    user, token = old.add_user("u", can_upload=True)
    ids = _jobs(old, user.id, _program(old, user.id), 3)
    old.claim_jobs("old", 1)
    old.finish_job(ids[0], JobState.COMPLETED, result='"kept"', logs="old logs\n")
    old.add_messages(ids[1], ['"m1"', '"m2"'])
    old.dispose()
    assert _revision(db) is None

    store = Store(db)
    assert _revision(db) == migrations.HEAD
    assert store.user_for_token(token) is not None
    done = store.get_job(ids[0])
    assert done is not None and done.status == "COMPLETED" and done.result == '"kept"'
    assert done.logs == "old logs\n"
    assert store.messages_after(ids[1], 0) == [(1, '"m1"'), (2, '"m2"')]
    assert [c.job.id for c in store.claim_jobs("new", 5)] == ids[1:]
    assert store.status_counts() == {"COMPLETED": 1, "RUNNING": 2}
    more = _jobs(store, user.id, _program_named(store, user.id, "q"), 1)
    assert store.list_jobs(user.id, 10, 0)[1] == 4 and more[0] not in ids
    store.dispose()
    Store(db).dispose()  # at head: nothing to do
    assert _revision(db) == migrations.HEAD


def test_a_schema_the_store_cannot_upgrade_is_refused_in_one_line(db: str) -> None:
    engine = create_engine(db, poolclass=NullPool)
    # Only one of the store's tables: neither empty nor the pre-migration schema.
    Base.metadata.tables["users"].create(engine)
    with pytest.raises(DatabaseUnavailable, match=r"missing: idempotency_keys, instances") as exc:
        Store(db)
    assert "\n" not in exc.value.message
    Base.metadata.tables["users"].drop(engine)
    Store(db).dispose()
    # Upgraded by a newer release: this one does not know its revision.
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(DatabaseUnavailable, match=r"revision '9999', made by a newer version"):
        Store(db)
    engine.dispose()


def test_instances_starting_at_once_migrate_once(db: str) -> None:
    """Six stores open one empty database together: one schema, every store usable."""
    start = threading.Barrier(6)
    errors: list[BaseException] = []
    users: list[str] = []

    def open_store(n: int) -> None:
        start.wait()
        try:
            store = Store(db)
            users.append(store.add_user(f"u{n}")[0].name)
            store.dispose()
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=open_store, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(users) == [f"u{n}" for n in range(6)]
    assert _revision(db) == migrations.HEAD


def test_a_claim_skips_the_jobs_another_instance_has_locked(postgres_url: str) -> None:
    """PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``: a locked job is passed over, not waited
    for, and claimed once its lock is gone."""
    store = Store(postgres_url)
    user, _ = store.add_user("u")
    ids = _jobs(store, user.id, _program(store, user.id), 3)
    claimed: list[str] = []
    with store.engine.connect() as other, other.begin():
        # Another instance in the middle of claiming the oldest job.
        other.execute(select(JOBS.c.id).where(JOBS.c.id == ids[0]).with_for_update())
        claimer = threading.Thread(
            target=lambda: claimed.extend(c.job.id for c in store.claim_jobs("me", 3))
        )
        claimer.start()
        claimer.join(timeout=30)
        waited = claimer.is_alive()
    claimer.join()
    assert not waited and claimed == ids[1:]
    assert [c.job.id for c in store.claim_jobs("me", 3)] == ids[:1]
    store.dispose()
