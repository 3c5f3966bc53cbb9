"""The job state machine: its transition table, refused changes, and a cancel racing a finish, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from database_helpers import add_program
from sqlalchemy import select, update

from prefect_qiskit_runtime.core.models import FINAL_STATES, JobState, ReasonCode
from prefect_qiskit_runtime.server.store import FinishOutcome, Job, Store
from prefect_qiskit_runtime.server.store.states import (
    CANCEL,
    CLAIM,
    FINISH,
    SOURCES,
    TRANSITIONS,
    change_status,
)
from prefect_qiskit_runtime.server.store.tables import JOBS

Q, R = JobState.QUEUED, JobState.RUNNING


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    yield store
    store.dispose()


def _user_and_program(store: Store) -> tuple[str, str]:
    user, _ = store.add_user("u", can_upload=True)
    return user.id, add_program(store, user.id, data="x")


def _job(store: Store, owner: str, program: str) -> str:
    answer, _ = store.create_job(
        owner_id=owner,
        program_id=program,
        backend="aer_simulator",
        params="{}",
        hub="local",
        group="default",
        project="main",
        log_level=None,
        runtime=None,
    )
    return str(answer.body["id"])


def _set_status(store: Store, job_id: str, status: JobState) -> None:
    with store.write() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=status.value))


def _row(store: Store, job_id: str) -> dict[str, Any]:
    with store.core_read() as conn:
        return dict(conn.execute(select(JOBS).where(JOBS.c.id == job_id)).one()._mapping)


# -- (c) the table ---------------------------------------------------------------------------


def test_each_status_is_reached_only_from_its_listed_sources() -> None:
    expected = {
        JobState.QUEUED: frozenset(),  # a job is born QUEUED and never goes back
        JobState.RUNNING: frozenset({Q}),
        JobState.COMPLETED: frozenset({R}),
        JobState.FAILED: frozenset({Q, R}),  # QUEUED: its program was deleted before it started
        JobState.CANCELLED: frozenset({Q, R}),
        JobState.CANCELLED_RAN_TOO_LONG: frozenset({R}),
    }
    assert expected == SOURCES
    for transition in TRANSITIONS:
        assert not transition.sources & FINAL_STATES  # nothing leaves a final status
        assert transition.sources and transition.targets


@pytest.mark.parametrize(
    ("transition", "target"),
    [(t, target) for t in TRANSITIONS for target in sorted(t.targets, key=list(JobState).index)],
    ids=lambda value: value.name,
)
def test_every_transition_applies_from_its_sources_and_nowhere_else(
    store: Store, transition: Any, target: JobState
) -> None:
    owner, program = _user_and_program(store)
    job_id = _job(store, owner, program)
    for source in JobState:
        _set_status(store, job_id, source)
        before = _row(store, job_id)
        with store.core_write() as conn:
            change = change_status(conn, transition, target, job_id, {"error": "changed"})
        after = _row(store, job_id)
        assert change.won == (source in transition.sources), (source, target)
        if change.won:
            assert after == {**before, "status": target.value, "error": "changed"}
        else:
            assert after == before


def test_a_transition_refuses_a_target_outside_its_table_entry(store: Store) -> None:
    owner, program = _user_and_program(store)
    job_id = _job(store, owner, program)
    before = _row(store, job_id)
    with store.core_write() as conn:
        for transition, target in [(CLAIM, JobState.COMPLETED), (FINISH, R), (CANCEL, Q)]:
            with pytest.raises(ValueError, match=transition.name):
                change_status(conn, transition, target, job_id)
    with pytest.raises(ValueError):
        store.finish_job(job_id, JobState.RUNNING)
    assert _row(store, job_id) == before


# -- (b) disallowed changes through the store --------------------------------------------------


def test_finishing_a_completed_job_changes_nothing(store: Store) -> None:
    owner, program = _user_and_program(store)
    job_id = _job(store, owner, program)
    assert [c.job.id for c in store.claim_jobs("me", 1)] == [job_id]
    assert store.finish_job(job_id, JobState.COMPLETED, result='"first"', logs="a\n").applied
    before = _row(store, job_id)
    again = store.finish_job(job_id, JobState.FAILED, reason_code=ReasonCode.PROGRAM_ERROR)
    assert again == FinishOutcome(applied=False, exists=True, status="COMPLETED")
    assert not store.end_running_job(job_id, JobState.FAILED, ReasonCode.SERVICE_RESTARTED, "x")
    assert store.cancel_job(job_id, owner)[1] is False
    assert store.recover("me") == []
    assert _row(store, job_id) == before


def test_a_cancelled_job_is_never_claimed(store: Store) -> None:
    owner, program = _user_and_program(store)
    job_id = _job(store, owner, program)
    job, changed = store.cancel_job(job_id, owner)
    assert changed and job is not None and job.status == "CANCELLED"
    before = _row(store, job_id)
    assert store.claim_jobs("me", 5) == []
    with store.core_write() as conn:
        assert not change_status(conn, CLAIM, R, job_id, {"instance_id": "me"}).won
    assert _row(store, job_id) == before


def test_cancel_of_another_users_job_is_not_found_and_changes_nothing(store: Store) -> None:
    owner, program = _user_and_program(store)
    job_id = _job(store, owner, program)
    other, _ = store.add_user("someone-else")
    before = _row(store, job_id)
    assert store.cancel_job(job_id, other.id) == (None, False)
    assert store.cancel_job("no-such-job", owner) == (None, False)
    assert _row(store, job_id) == before


# -- (a) a cancel racing a finish --------------------------------------------------------------


def _race(
    canceller: Store, finisher: Store, job_id: str, owner: str
) -> tuple[tuple[Job | None, bool], FinishOutcome]:
    """Cancel and finish ``job_id`` from two threads released at the same moment."""
    start = threading.Barrier(2)
    outcome: dict[str, Any] = {}

    def cancel() -> None:
        start.wait()
        outcome["cancel"] = canceller.cancel_job(job_id, owner)

    def finish() -> None:
        start.wait()
        outcome["finish"] = finisher.finish_job(
            job_id, JobState.COMPLETED, result='"done"', logs="printed\n"
        )

    threads = [threading.Thread(target=cancel), threading.Thread(target=finish)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome["cancel"], outcome["finish"]


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "rowcount"])
def test_cancel_racing_finish_ends_in_exactly_one_final_state(
    database_url: str, returning: bool
) -> None:
    """Two stores (two pools, as two instances would have) race 40 times on a RUNNING job."""
    url = database_url
    setup = Store(url)
    owner, program = _user_and_program(setup)
    canceller, finisher = Store(url, create=False), Store(url, create=False)
    for store in (canceller, finisher):
        # Without UPDATE … RETURNING, winners are told by the row count.
        store.engine.dialect.update_returning = returning
    winners = {"CANCELLED": 0, "COMPLETED": 0}
    for _ in range(40):
        job_id = _job(setup, owner, program)
        assert [c.job.id for c in setup.claim_jobs("me", 1)] == [job_id]
        (cancelled_job, cancelled), finished = _race(canceller, finisher, job_id, owner)
        assert cancelled != finished.applied  # exactly one caller was told it won
        job = setup.get_job(job_id)
        assert job is not None and job.logs == "printed\n"
        assert cancelled_job is not None and cancelled_job.status == job.status
        assert finished.status == job.status
        if cancelled:
            assert job.status == "CANCELLED" and job.reason_code == "CANCELLED_BY_USER"
            assert job.result is None
        else:
            assert job.status == "COMPLETED" and job.result == '"done"'
        assert job.ended is not None
        winners[job.status] += 1
    assert sum(winners.values()) == 40
    print(f"races=40 cancel_won={winners['CANCELLED']} finish_won={winners['COMPLETED']}")
    for store in (setup, canceller, finisher):
        store.dispose()
