"""The job state machine: the one table of allowed status changes and the one way to make them.

A job is created QUEUED, or RUNNING when it is claimed at submission (``Store.create_job``). After
that its status changes only through :func:`change_status`, along a :data:`TRANSITIONS` entry:

============  ==================  =======================================================
transition    from                to
============  ==================  =======================================================
``claim``     QUEUED              RUNNING
``reject``    QUEUED              FAILED (its program was deleted before it started)
``finish``    RUNNING             any final status: the outcome, the watchdog, a clean
                                  stop, recovery of a job whose instance is gone
``cancel``    QUEUED, RUNNING     CANCELLED
============  ==================  =======================================================

Nothing leaves a final status and nothing returns to QUEUED. Each change is one conditional
``UPDATE … WHERE id = :job_id AND status IN (<the transition's sources>)``: of two racing changes
(a cancel and a finish, two instances claiming) exactly one matches the row, on SQLite (one writer
at a time) as on PostgreSQL (the second waits for the row lock, then re-checks the condition), and
the other is told it lost. No status is ever read and written back in two steps.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.sql.dml import Update

from prefect_qiskit_runtime.core.models import FINAL_STATES, JobState
from prefect_qiskit_runtime.server.store.engine import rowcount
from prefect_qiskit_runtime.server.store.tables import JOBS

_QUEUED, _RUNNING = JobState.QUEUED, JobState.RUNNING


@dataclass(frozen=True)
class Transition:
    """A kind of status change: the statuses it starts from and those it may lead to."""

    name: str
    sources: frozenset[JobState]
    targets: frozenset[JobState]


CLAIM = Transition("claim", frozenset({_QUEUED}), frozenset({_RUNNING}))
REJECT = Transition("reject", frozenset({_QUEUED}), frozenset({JobState.FAILED}))
FINISH = Transition("finish", frozenset({_RUNNING}), FINAL_STATES)
CANCEL = Transition("cancel", frozenset({_QUEUED, _RUNNING}), frozenset({JobState.CANCELLED}))

#: Every allowed status change.
TRANSITIONS: tuple[Transition, ...] = (CLAIM, REJECT, FINISH, CANCEL)

#: For each status, those it can be reached from (derived from :data:`TRANSITIONS`).
SOURCES: Mapping[JobState, frozenset[JobState]] = {
    target: frozenset().union(*(t.sources for t in TRANSITIONS if target in t.targets))
    for target in JobState
}


@dataclass(frozen=True)
class Change:
    """What :func:`change_status` did."""

    won: bool
    """The job had one of the transition's source statuses and now has the target."""
    row: Row[Any] | None = None
    """Every column of the job as stored, when it won, rows were asked for and the database
    returns them from an ``UPDATE``."""


@functools.cache
def _statement(
    transition: Transition, columns: tuple[str, ...], by_owner: bool, returning: bool
) -> Update:
    # One statement per shape, built once: SQLAlchemy then reuses its compiled form.
    conditions = [
        JOBS.c.id == bindparam("job_id"),
        JOBS.c.status.in_(sorted(state.value for state in transition.sources)),
    ]
    if by_owner:
        conditions.append(JOBS.c.owner_id == bindparam("only_owner"))
    values = {"status": bindparam("new_status", type_=JOBS.c.status.type)}
    values.update({name: bindparam(f"new_{name}", type_=JOBS.c[name].type) for name in columns})
    statement = update(JOBS).where(*conditions).values(values)
    return statement.returning(*JOBS.c) if returning else statement


def change_status(
    conn: Connection,
    transition: Transition,
    target: JobState,
    job_id: str,
    values: Mapping[str, Any] | None = None,
    *,
    owner_id: str | None = None,
    returning: bool = False,
) -> Change:
    """Move one job to ``target`` along ``transition``, if its status allows it, in one UPDATE.

    Args:
        conn: A Core connection inside a write transaction.
        transition: The kind of change; the job must have one of its source statuses.
        target: The new status, one of the transition's targets.
        job_id: The job.
        values: Other columns to set with the status (Core column names).
        owner_id: Only change the job if it belongs to this user.
        returning: Give back the stored job (on databases that support ``UPDATE … RETURNING``).

    Returns:
        Whether the change was made (and the stored job, when asked for and available).

    Raises:
        ValueError: If ``target`` is not one of the transition's targets.
    """
    if target not in transition.targets:
        raise ValueError(f"A {transition.name} cannot lead to {target.value}.")
    values = values or {}
    returning = returning and bool(getattr(conn.dialect, "update_returning", False))
    statement = _statement(transition, tuple(sorted(values)), owner_id is not None, returning)
    params: dict[str, Any] = {"job_id": job_id, "new_status": target.value}
    params.update({f"new_{name}": value for name, value in values.items()})
    if owner_id is not None:
        params["only_owner"] = owner_id
    result = conn.execute(statement, params)
    if returning:
        row = result.first()
        return Change(won=row is not None, row=row)
    return Change(won=rowcount(result) > 0)
