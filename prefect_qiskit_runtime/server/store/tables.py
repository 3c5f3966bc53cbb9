"""The store's tables: SQLAlchemy 2 models, their Core tables and the timestamp helpers.

The hot paths use the Core tables (``JOBS``, ``MESSAGES`` …) with prebuilt statements; the ORM
models serve the rest and are also what every read returns (detached, safe to read after the
session closed).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    select,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from prefect_qiskit_runtime.core.models import JobState

SYSTEM_USER_ID = "system"
DEFAULT_HUB, DEFAULT_GROUP, DEFAULT_PROJECT = "local", "default", "main"


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def isoformat(value: datetime | None) -> str | None:
    """Format a timestamp as ISO-8601 UTC with a ``Z`` suffix (``None`` stays ``None``)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC and gives them back aware (SQLite keeps no offset)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class User(Base):
    """An account. ``can_upload`` allows creating programs; the system account owns built-ins."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    can_upload: Mapped[bool] = mapped_column(Boolean, default=False)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    """One API token of a user, stored as its SHA-256 hex digest."""

    __tablename__ = "tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def decode_spec(spec: str | None) -> dict[str, Any]:
    """Decode a program's stored ``spec`` JSON (anything but an object gives ``{}``).

    Args:
        spec: The stored text, or ``None``.

    Returns:
        The decoded object.
    """
    value = json.loads(spec or "{}")
    return value if isinstance(value, dict) else {}


class Program(Base):
    """A runtime program: source, metadata and visibility."""

    __tablename__ = "programs"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_program_owner_name"),)

    n: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(100), unique=True)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    cost: Mapped[int] = mapped_column(Integer, default=300)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False)
    spec: Mapped[str] = mapped_column(Text, default="{}")
    data: Mapped[str] = mapped_column(Text, default="")
    creation_date: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_date: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def spec_dict(self) -> dict[str, Any]:
        """The stored ``spec`` decoded."""
        return decode_spec(self.spec)


class Job(Base):
    """A job: what to run, where it is in its life, and what it left behind."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_n", "owner_id", "n"),
        Index("ix_jobs_status_n", "status", "n"),
        # The modern API's usage (seconds run this month), asked before every primitive job.
        Index("ix_jobs_owner_ended", "owner_id", "ended"),
    )

    n: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    program_id: Mapped[str] = mapped_column(String(100), index=True)
    hub: Mapped[str] = mapped_column(String(100), default=DEFAULT_HUB)
    group: Mapped[str] = mapped_column("group_name", String(100), default=DEFAULT_GROUP)
    project: Mapped[str] = mapped_column(String(100), default=DEFAULT_PROJECT)
    backend: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(40), default=JobState.QUEUED.value)
    params: Mapped[str] = mapped_column(Text, default="{}")
    log_level: Mapped[str | None] = mapped_column(String(20), nullable=True)
    runtime: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cost: Mapped[int] = mapped_column(Integer, default=300)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Last message delivered to a plain (old-client) stream; NULL until the first plain connection.
    plain_cursor: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The service instance that claimed the job for running.
    instance_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    @property
    def state(self) -> JobState:
        """The status as a :class:`JobState`."""
        return JobState(self.status)

    @property
    def is_final(self) -> bool:
        """Whether the job can no longer change state."""
        return self.state.is_final


class Message(Base):
    """One interim result of a job, numbered from 1 without gaps."""

    __tablename__ = "messages"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """The first answer to a POST carrying an ``Idempotency-Key``, per user."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(100))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Instance(Base):
    """A running service instance; its jobs are failed when it is gone."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


JOBS = cast(Table, Job.__table__)
MESSAGES = cast(Table, Message.__table__)
PROGRAMS = cast(Table, Program.__table__)
TOKENS = cast(Table, Token.__table__)
USERS = cast(Table, User.__table__)
IDEMPOTENCY = cast(Table, IdempotencyKey.__table__)
INSTANCES = cast(Table, Instance.__table__)

#: Columns a job's status answer does not need: they may be large (up to the log limit).
JOB_OUTPUT_COLUMNS = ("result", "error", "logs")
#: Every job column but the large ones, for status reads and claims.
JOB_LIGHT = select(*(c for c in JOBS.c if c.key not in JOB_OUTPUT_COLUMNS))
#: One job, every column (bind ``job_id``).
JOB_BY_ID = select(JOBS).where(JOBS.c.id == bindparam("job_id"))
# Core column keys that differ from the model's attribute names.
_JOB_ATTRS = {"group_name": "group"}


def job_from_row(row: Row[Any]) -> Job:
    """Build a detached (transient) :class:`Job` from a Core row of ``JOBS``.

    Args:
        row: A row with some or all of the job's columns.

    Returns:
        The job; columns not selected stay ``None``.
    """
    return Job(**{_JOB_ATTRS.get(key, key): value for key, value in row._mapping.items()})
