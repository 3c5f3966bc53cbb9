"""The service's store: SQLAlchemy 2 models and the repository functions every other part uses.

The store is the source of truth. Routes and the scheduler never keep state that would be lost in a
crash: every program, job, interim message, result, log and idempotency answer is written here
first.

All functions are synchronous and return detached ORM objects that are safe to read after the
session closed. Call them from a worker thread when on the event loop; only short reads of a SQLite
store may run on the loop itself (``Store.inline_reads``, see ``auth.store_read``). The paths every
job takes (token check, job insert with its idempotency key, claim, finish, job read, messages) use
SQLAlchemy Core with prebuilt statements: the ORM's unit of work cost several times the SQL.

One module per concern: :mod:`.tables` (models), :mod:`.engine` (engine, transactions, SQLite
locking), :mod:`.users`, :mod:`.programs`, :mod:`.idempotency`, :mod:`.jobs` (submission and reads),
:mod:`.lifecycle` (a job's status changes), :mod:`.messages`, :mod:`.instances` (recovery), and for
the modern API :mod:`.sessions` (sessions, batches, job tags) and :mod:`.access_tokens`, over the
tables of :mod:`.session_tables`.
:class:`Store` is all of them over one database; its schema is made and upgraded by the Alembic
revisions of :mod:`prefect_qiskit_runtime.server.migrations`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect_qiskit_runtime.server.store.access_tokens import AccessTokenStore
from prefect_qiskit_runtime.server.store.errors import (
    DatabaseUnavailable,
    DuplicateProgramError,
    ForbiddenError,
    StoreError,
)
from prefect_qiskit_runtime.server.store.idempotency import Answer
from prefect_qiskit_runtime.server.store.instances import InstanceStore
from prefect_qiskit_runtime.server.store.jobs import (
    ClaimedJob,
    JobStore,
    dedicated_sessions,
    new_job_id,
)
from prefect_qiskit_runtime.server.store.lifecycle import FinishOutcome, LifecycleStore
from prefect_qiskit_runtime.server.store.messages import MessageStore
from prefect_qiskit_runtime.server.store.programs import ProgramInfo, ProgramStore
from prefect_qiskit_runtime.server.store.session_tables import RuntimeSession
from prefect_qiskit_runtime.server.store.sessions import JobExtras, JobFilter, SessionStore
from prefect_qiskit_runtime.server.store.tables import (
    DEFAULT_GROUP,
    DEFAULT_HUB,
    DEFAULT_PROJECT,
    SYSTEM_USER_ID,
    IdempotencyKey,
    Instance,
    Job,
    Message,
    Program,
    Token,
    User,
    isoformat,
    utcnow,
)
from prefect_qiskit_runtime.server.store.users import UserStore, hash_token


class Store(
    UserStore,
    ProgramStore,
    JobStore,
    LifecycleStore,
    MessageStore,
    InstanceStore,
    SessionStore,
    AccessTokenStore,
):
    """Repository over one database.

    Args:
        url: SQLAlchemy URL: SQLite (files get WAL, ``busy_timeout``, ``synchronous=NORMAL``) or
            PostgreSQL (``postgresql+psycopg://…``).
        create: Create or upgrade the schema (the migrations; see :meth:`StoreBase.migrate`).
        busy_timeout: SQLite only: seconds to wait for a lock held by another connection.

    Example:
        >>> store = Store("sqlite://")
        >>> user, token = store.add_user("alice", can_upload=True)
        >>> store.user_for_token(token).name
        'alice'
    """

    def claim_jobs_to_run(self, instance_id: str, limit: int) -> list[ClaimedJob]:
        """:meth:`claim_jobs`, each claimed job with its dedicated session (if it has one)."""
        claimed = self.claim_jobs(instance_id, limit)
        if not claimed:
            return claimed
        with self.core_read() as conn:
            sessions = dedicated_sessions(conn, [item.job.id for item in claimed])
        return [replace(item, session_id=sessions.get(item.job.id)) for item in claimed]


def create_user_token(
    home: Path, name: str, can_upload: bool = False, database_url: str | None = None
) -> str:
    """Create a user (or give an existing one a new token) in the store of the service at ``home``.

    The CLI's ``users add`` calls this; it imports nothing of the web stack, so it is quick.

    Args:
        home: The service home (the default database lives there).
        name: User name.
        can_upload: Allow uploading programs (only ever granted for an existing user).
        database_url: The service's database URL when it is not the default SQLite file.

    Returns:
        The new API token.

    Raises:
        StoreError: If the name is not allowed.
    """
    from prefect_qiskit_runtime.server.config import ServiceConfig

    home.mkdir(parents=True, exist_ok=True)
    store = Store(ServiceConfig(home=home, database_url=database_url).db_url)
    try:
        store.ensure_system_user()
        _, token = store.add_user(name, can_upload=can_upload)
        return token
    finally:
        store.dispose()


__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_HUB",
    "DEFAULT_PROJECT",
    "SYSTEM_USER_ID",
    "Answer",
    "ClaimedJob",
    "DatabaseUnavailable",
    "DuplicateProgramError",
    "FinishOutcome",
    "ForbiddenError",
    "IdempotencyKey",
    "Instance",
    "Job",
    "JobExtras",
    "JobFilter",
    "Message",
    "Program",
    "ProgramInfo",
    "RuntimeSession",
    "Store",
    "StoreError",
    "Token",
    "User",
    "create_user_token",
    "hash_token",
    "isoformat",
    "new_job_id",
    "utcnow",
]
