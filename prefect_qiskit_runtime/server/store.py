"""The service's store: SQLAlchemy 2 models and the repository functions every other part uses.

The store is the source of truth. Routes and the scheduler never keep state that would be lost in a
crash: every program, job, interim message, result, log and idempotency answer is written here
first.

SQLite (the default) runs in WAL mode with a busy timeout; writes take the database's write lock at
the start of their transaction (``BEGIN IMMEDIATE``) and are serialised within the process, so
readers never block and writers never deadlock. Any other SQLAlchemy URL works too; on PostgreSQL
several service instances share one queue, claiming jobs with ``SELECT … FOR UPDATE SKIP LOCKED``.

All functions are synchronous and return detached ORM objects that are safe to read after the
session closed. Call them from a worker thread when on the event loop; only short reads of a SQLite
store may run on the loop itself (``Store.inline_reads``, see ``auth.store_read``). The paths every
job takes (token check, job insert with its idempotency key, claim, finish, job read, messages) use
SQLAlchemy Core with prebuilt statements: the ORM's unit of work cost several times the SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
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
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from prefect_qiskit_runtime.core.models import FINAL_STATES, PENDING_STATES, JobState, ReasonCode

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


def hash_token(token: str) -> str:
    """Return the stored form of an API token.

    Tokens are 256-bit random strings, so one round of SHA-256 is enough: there is nothing to
    brute-force that a slow hash would protect.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


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
        value = json.loads(self.spec or "{}")
        return value if isinstance(value, dict) else {}


class Job(Base):
    """A job: what to run, where it is in its life, and what it left behind."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_n", "owner_id", "n"),
        Index("ix_jobs_status_n", "status", "n"),
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

#: Columns a job's status answer does not need: they may be large (up to the log limit).
_JOB_OUTPUT_COLUMNS = ("result", "error", "logs")
_JOB_ATTRS = {"group_name": "group"}
_JOB_ALL = select(JOBS)
_JOB_LIGHT = select(*(c for c in JOBS.c if c.key not in _JOB_OUTPUT_COLUMNS))


# Hot statements, built once (their compiled form is cached by SQLAlchemy).
_JOB_BY_ID = _JOB_ALL.where(JOBS.c.id == bindparam("job_id"))
_JOB_LIGHT_BY_ID = _JOB_LIGHT.where(JOBS.c.id == bindparam("job_id"))
_USER_BY_TOKEN = (
    select(TOKENS.c.token_hash, USERS)
    .join(USERS, USERS.c.id == TOKENS.c.user_id)
    .where(TOKENS.c.token_hash == bindparam("digest"))
)
_BUMP_MESSAGES = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"))
    .values(message_count=JOBS.c.message_count + bindparam("count", type_=Integer))
)
_BUMP_MESSAGES_RETURNING = _BUMP_MESSAGES.returning(JOBS.c.message_count)
_CLAIMABLE = (
    _JOB_LIGHT.where(JOBS.c.status == JobState.QUEUED.value)
    .order_by(JOBS.c.n)
    .limit(bindparam("limit", type_=Integer))
)
_CLAIMABLE_SKIP_LOCKED = _CLAIMABLE.with_for_update(skip_locked=True)
_SOURCES = select(PROGRAMS.c.id, PROGRAMS.c.data).where(
    PROGRAMS.c.id.in_(bindparam("program_ids", expanding=True))
)
_MARK_RUNNING = (
    update(JOBS)
    .where(JOBS.c.n.in_(bindparam("ns", expanding=True)))
    .values(
        status=JobState.RUNNING.value,
        instance_id=bindparam("instance"),
        started=bindparam("now", type_=UTCDateTime),
    )
)
_FINISH_FIELDS = ("status", "reason_code", "result", "error", "ended")
_FINISH = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"), JOBS.c.status == JobState.RUNNING.value)
    .values({name: bindparam(f"new_{name}", type_=JOBS.c[name].type) for name in _FINISH_FIELDS})
)
_FINISH_WITH_LOGS = _FINISH.values(logs=bindparam("new_logs", type_=Text))
_FINISH_RETURNING = _FINISH.returning(*JOBS.c)
_FINISH_WITH_LOGS_RETURNING = _FINISH_WITH_LOGS.returning(*JOBS.c)
_ANSWER = select(IDEMPOTENCY.c.status_code, IDEMPOTENCY.c.body).where(
    IDEMPOTENCY.c.user_id == bindparam("user_id"), IDEMPOTENCY.c.key == bindparam("key")
)
_RUNNABLE_PROGRAM = select(PROGRAMS.c.id, PROGRAMS.c.cost, PROGRAMS.c.spec).where(
    PROGRAMS.c.id == bindparam("program_id"),
    or_(PROGRAMS.c.is_public.is_(True), PROGRAMS.c.owner_id == bindparam("user_id")),
)
_RUNNABLE_PROGRAM_SOURCE = _RUNNABLE_PROGRAM.add_columns(PROGRAMS.c.data)
_ANY_QUEUED = select(JOBS.c.n).where(JOBS.c.status == JobState.QUEUED.value).limit(1)


def _stored_answer(conn: Connection, user_id: str, key: str) -> Answer | None:
    row = conn.execute(_ANSWER, {"user_id": user_id, "key": key}).first()
    if row is None:
        return None
    return Answer(row.status_code, json.loads(row.body), True)


def _job_from_row(row: Row[Any]) -> Job:
    """A detached (transient) :class:`Job` from a Core row; columns not selected stay ``None``."""
    return Job(**{_JOB_ATTRS.get(key, key): value for key, value in row._mapping.items()})


def _user_from_row(mapping: Any) -> User:
    return User(
        id=mapping["id"],
        name=mapping["name"],
        can_upload=bool(mapping["can_upload"]),
        is_system=bool(mapping["is_system"]),
        created=mapping["created"],
    )


@dataclass(frozen=True)
class ProgramInfo:
    """What submitting a job needs of its program (not its source)."""

    id: str
    cost: int
    spec: str

    @property
    def spec_dict(self) -> dict[str, Any]:
        """The stored ``spec`` decoded."""
        value = json.loads(self.spec or "{}")
        return value if isinstance(value, dict) else {}


class StoreError(Exception):
    """A repository operation was refused; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DuplicateProgramError(StoreError):
    """The user already has a program with this name."""

    def __init__(self, name: str) -> None:
        super().__init__("DUPLICATE_PROGRAM", f"A program named {name!r} already exists.")


class ForbiddenError(StoreError):
    """The user sees the object but may not change it."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer remembered for an idempotency key."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True)
class ClaimedJob:
    """A job claimed for running, with what the executor needs."""

    job: Job
    program_source: str


@dataclass(frozen=True)
class FinishOutcome:
    """What :meth:`Store.finish_job` did."""

    applied: bool
    """The job was RUNNING and now has the given final status."""
    exists: bool
    """The job still exists (it may have been deleted while running)."""
    status: str | None
    """The job's status after the call."""
    job: Job | None = None
    """The job as stored by the call, when it was applied and the database returns rows."""


_SLUG = re.compile(r"[^a-z0-9]+")


def _program_id(name: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:40] or "program"
    return f"{slug}-{secrets.token_hex(3)}"


def _rowcount(result: Any) -> int:
    # ``Session.execute`` is typed as returning ``Result``; DML statements give a ``CursorResult``.
    return int(getattr(result, "rowcount", 0) or 0)


def new_job_id() -> str:
    """Return a fresh job id (20 lowercase hex characters)."""
    return secrets.token_hex(10)


def _pid_alive(pid: int, since: datetime) -> bool:
    """Whether ``pid`` is a live process that existed at ``since`` (guards against pid reuse)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= since.timestamp() + 2.0
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class Store:
    """Repository over one database.

    Args:
        url: SQLAlchemy URL; SQLite files get WAL, ``busy_timeout`` and ``synchronous=NORMAL``.
        create: Create missing tables.

    Example:
        >>> store = Store("sqlite://")
        >>> user, token = store.add_user("alice", can_upload=True)
        >>> store.user_for_token(token).name
        'alice'
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = self._make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._skip_locked = self.engine.dialect.name in {"postgresql", "mysql", "mariadb", "oracle"}
        self._update_returning = bool(getattr(self.engine.dialect, "update_returning", False))
        #: Short reads may run on the event loop: a WAL reader never waits for a writer, and a
        #: local file read is cheaper than a hop to a worker thread. A networked database is not.
        self.inline_reads = self.is_sqlite
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time anyway; queueing our own threads here is cheaper than the
        # busy handler's sleeps.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if create:
            Base.metadata.create_all(self.engine)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if not url.startswith("sqlite"):
            return create_engine(url, pool_pre_ping=True, future=True)
        memory = url in {"sqlite://", "sqlite:///:memory:"}
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:
            kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(pool_size=8, max_overflow=32)
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, not the driver, open transactions (see below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A write transaction takes the write lock up front, so it never has to upgrade a read
            # snapshot (which fails at once with SQLITE_BUSY, whatever the busy timeout). Sent on
            # the driver's connection: SQLAlchemy's statement machinery would double its cost.
            immediate = conn.get_execution_options().get("sqlite_immediate")
            conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    # -- sessions ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; rolled back at the end."""
        with self._session() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session that commits at the end (or rolls back on an exception)."""
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self._session() as session:
            if self.is_sqlite:
                session.connection(execution_options={"sqlite_immediate": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextlib.contextmanager
    def core_read(self) -> Iterator[Connection]:
        """A Core connection for reading (the hot paths skip the ORM's unit of work)."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def core_write(self) -> Iterator[Connection]:
        """A Core connection in a write transaction: committed at the end, rolled back on error.

        Same locking as :meth:`write` (SQLite: ``BEGIN IMMEDIATE`` under the process's write lock).
        """
        lock = self._write_lock or contextlib.nullcontext()
        with lock, self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    # -- users ---------------------------------------------------------------------------------

    def ensure_system_user(self) -> None:
        """Create the system account that owns the built-in programs (it has no token)."""
        with self.write() as s:
            if s.get(User, SYSTEM_USER_ID) is None:
                s.add(User(id=SYSTEM_USER_ID, name="system", can_upload=True, is_system=True))

    def add_user(self, name: str, can_upload: bool = False) -> tuple[User, str]:
        """Create a user, or give an existing one another token.

        Args:
            name: Unique user name.
            can_upload: Allow uploading programs. For an existing user this only ever grants.

        Returns:
            The user and the new API token (shown once; only its hash is stored).

        Raises:
            StoreError: If ``name`` is empty or the system account's.
        """
        name = name.strip()
        if not name or name == "system":
            raise StoreError("INVALID_NAME", f"Invalid user name {name!r}.")
        token = "pqr_" + secrets.token_urlsafe(32)
        with self.write() as s:
            user = s.scalars(select(User).where(User.name == name)).first()
            if user is None:
                user = User(id=secrets.token_hex(8), name=name, can_upload=can_upload)
                s.add(user)
                s.flush()
            elif can_upload and not user.can_upload:
                user.can_upload = True
            s.add(Token(token_hash=hash_token(token), user_id=user.id))
        return user, token

    def user_for_token(self, token: str | None) -> User | None:
        """Return the user a token belongs to, or ``None``.

        Args:
            token: The API token as sent by a client.
        """
        if not token or len(token) > 512:
            return None
        digest = hash_token(token)
        with self.core_read() as conn:
            row = conn.execute(_USER_BY_TOKEN, {"digest": digest}).first()
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        user = _user_from_row(row._mapping)
        return None if user.is_system else user

    def list_users(self) -> list[User]:
        """Every account except the system one, oldest first."""
        with self.read() as s:
            return list(
                s.scalars(select(User).where(User.is_system.is_(False)).order_by(User.created))
            )

    # -- idempotency ---------------------------------------------------------------------------

    def idempotent(
        self,
        user_id: str,
        key: str | None,
        scope: str,
        create: Callable[[Session], Answer],
    ) -> Answer:
        """Run ``create`` once per ``(user, key)``, storing its answer in the same transaction.

        Args:
            user_id: The caller.
            key: The ``Idempotency-Key`` header, or ``None`` to always create.
            scope: What the key was used for (``POST /runtime/jobs``), kept for diagnostics.
            create: Makes the object inside the given session and returns the answer.

        Returns:
            The first answer; ``replayed`` is true when it comes from an earlier request.
        """
        if key:
            stored = self.stored_answer(user_id, key)
            if stored is not None:
                return stored
        try:
            with self.write() as s:
                if key:
                    # Checked again inside the write lock: another request may have won meanwhile.
                    row = s.get(IdempotencyKey, (user_id, key))
                    if row is not None:
                        return Answer(row.status_code, json.loads(row.body), True)
                answer = create(s)
                if key:
                    s.add(
                        IdempotencyKey(
                            user_id=user_id,
                            key=key,
                            scope=scope,
                            status_code=answer.status_code,
                            body=json.dumps(answer.body),
                        )
                    )
            return answer
        except IntegrityError:
            # A concurrent request with the same key committed first (other instance or process).
            if key:
                stored = self.stored_answer(user_id, key)
                if stored is not None:
                    return stored
            raise

    def stored_answer(self, user_id: str, key: str) -> Answer | None:
        """The answer stored for ``(user_id, key)`` by :meth:`idempotent`, if any."""
        with self.core_read() as conn:
            return _stored_answer(conn, user_id, key)

    # -- programs ------------------------------------------------------------------------------

    @staticmethod
    def _visible_programs(user_id: str) -> Any:
        return or_(Program.is_public.is_(True), Program.owner_id == user_id)

    def new_program(
        self,
        s: Session,
        *,
        owner_id: str,
        name: str,
        data: str,
        cost: int,
        description: str,
        is_public: bool,
        spec: str,
    ) -> Program:
        """Add a program inside an open write session (see :meth:`idempotent`).

        Raises:
            DuplicateProgramError: If the owner already has a program called ``name``.
        """
        exists = s.scalars(
            select(Program.id).where(Program.owner_id == owner_id, Program.name == name)
        ).first()
        if exists is not None:
            raise DuplicateProgramError(name)
        now = utcnow()
        program = Program(
            id=_program_id(name),
            owner_id=owner_id,
            name=name,
            data=data,
            cost=cost,
            description=description,
            is_public=is_public,
            spec=spec,
            creation_date=now,
            update_date=now,
        )
        s.add(program)
        s.flush()
        return program

    def list_programs(self, user_id: str, limit: int, offset: int) -> tuple[list[Program], int]:
        """Programs the user can see, oldest first.

        Returns:
            The page and the exact total.
        """
        visible = self._visible_programs(user_id)
        with self.read() as s:
            total = s.scalar(select(func.count()).select_from(Program).where(visible)) or 0
            rows = s.scalars(
                select(Program).where(visible).order_by(Program.n).offset(offset).limit(limit)
            )
            return list(rows), int(total)

    def get_program(self, program_id: str, user_id: str) -> Program | None:
        """The program if it exists and the user can see it."""
        with self.read() as s:
            return s.scalars(
                select(Program).where(Program.id == program_id, self._visible_programs(user_id))
            ).first()

    def _owned_program(self, s: Session, program_id: str, user_id: str) -> Program | None:
        program = s.scalars(
            select(Program).where(Program.id == program_id, self._visible_programs(user_id))
        ).first()
        if program is None:
            return None
        if program.owner_id != user_id:
            raise ForbiddenError("FORBIDDEN", "Only the program's author may change it.")
        return program

    def update_program(
        self, program_id: str, user_id: str, changes: dict[str, Any]
    ) -> Program | None:
        """Change a program's fields (``name``, ``description``, ``cost``, ``spec``, ``data``,
        ``is_public``) and bump ``update_date``.

        ``spec`` must already be merged JSON text.

        Returns:
            The updated program, or ``None`` if the user cannot see it.

        Raises:
            ForbiddenError: If the user sees it but is not its author.
            DuplicateProgramError: If a rename collides with another of the user's programs.
        """
        with self.write() as s:
            program = self._owned_program(s, program_id, user_id)
            if program is None:
                return None
            new_name = changes.get("name")
            if new_name is not None and new_name != program.name:
                clash = s.scalars(
                    select(Program.id).where(Program.owner_id == user_id, Program.name == new_name)
                ).first()
                if clash is not None:
                    raise DuplicateProgramError(new_name)
            for field, value in changes.items():
                setattr(program, field, value)
            program.update_date = utcnow()
            return program

    def delete_program(self, program_id: str, user_id: str) -> bool:
        """Delete a program (its jobs stay).

        Returns:
            False if the user cannot see it.

        Raises:
            ForbiddenError: If the user sees it but is not its author.
        """
        with self.write() as s:
            program = self._owned_program(s, program_id, user_id)
            if program is None:
                return False
            s.delete(program)
            return True

    def upsert_builtin(self, program_id: str, source: str, metadata: dict[str, Any]) -> bool:
        """Install or refresh a built-in program owned by the system account.

        Args:
            program_id: The id (the file stem, such as ``hello-world``).
            source: The program's source.
            metadata: ``name``, ``description``, ``max_execution_time``, ``spec``.

        Returns:
            True if something was written.
        """
        name = str(metadata.get("name") or program_id)
        description = str(metadata.get("description") or "")
        cost = int(metadata.get("max_execution_time") or metadata.get("cost") or 300)
        spec = json.dumps(metadata.get("spec") or {})
        with self.write() as s:
            program = s.scalars(select(Program).where(Program.id == program_id)).first()
            if program is None:
                now = utcnow()
                s.add(
                    Program(
                        id=program_id,
                        owner_id=SYSTEM_USER_ID,
                        name=name,
                        data=source,
                        cost=cost,
                        description=description,
                        is_public=True,
                        spec=spec,
                        creation_date=now,
                        update_date=now,
                    )
                )
                return True
            current = (program.name, program.data, program.cost, program.description, program.spec)
            if current == (name, source, cost, description, spec) and program.is_public:
                return False
            program.name, program.data, program.cost = name, source, cost
            program.description, program.spec, program.is_public = description, spec, True
            program.update_date = utcnow()
            return True

    # -- jobs ----------------------------------------------------------------------------------

    def runnable_program(self, program_id: str, user_id: str) -> ProgramInfo | None:
        """What a job submission needs of a program the user can see (never its source)."""
        with self.core_read() as conn:
            row = conn.execute(
                _RUNNABLE_PROGRAM, {"program_id": program_id, "user_id": user_id}
            ).first()
        return None if row is None else ProgramInfo(row.id, int(row.cost), row.spec or "{}")

    def create_job(
        self,
        *,
        owner_id: str,
        program_id: str,
        backend: str,
        params: str,
        hub: str,
        group: str,
        project: str,
        log_level: str | None,
        runtime: str | None,
        cost: int | None = None,
        idempotency_key: str | None = None,
        scope: str = "POST /runtime/jobs",
        claim_for: str | None = None,
    ) -> tuple[Answer, ClaimedJob | None]:
        """Queue a job and remember the answer with its idempotency key, in one transaction.

        The same contract as :meth:`idempotent` (a repeated key returns the first answer and
        creates nothing), in SQLAlchemy Core: this is the hottest write.

        With ``claim_for``, and no older job waiting in the queue, the job is created already
        claimed by that instance (RUNNING, as :meth:`claim_jobs` would leave it): a job submitted
        to an idle service skips the queue's round trip.

        Args:
            owner_id: The caller.
            program_id: A program the caller can see.
            backend: Backend name (already checked).
            params: The inputs as JSON text.
            hub: Hub.
            group: Group.
            project: Project.
            log_level: The program's logging level, or ``None``.
            runtime: The image option, or ``None``.
            cost: The job's own execution-time limit; ``None`` takes the program's.
            idempotency_key: The ``Idempotency-Key`` header, or ``None``.
            scope: What the key was used for, kept for diagnostics.
            claim_for: The id of an instance with a free slot for the job.

        Returns:
            The answer (``201 {"id", "backend"}``; ``replayed`` when it is the answer of an earlier
            request) and the claimed job when it was created claimed.

        Raises:
            StoreError: ``PROGRAM_NOT_FOUND`` if the program vanished meanwhile.
        """
        key = idempotency_key
        try:
            with self.core_write() as conn:
                if key:
                    stored = _stored_answer(conn, owner_id, key)
                    if stored is not None:
                        return stored, None
                program = conn.execute(
                    _RUNNABLE_PROGRAM if claim_for is None else _RUNNABLE_PROGRAM_SOURCE,
                    {"program_id": program_id, "user_id": owner_id},
                ).first()
                if program is None:
                    raise StoreError("PROGRAM_NOT_FOUND", f"Program {program_id!r} not found.")
                now = utcnow()
                values: dict[str, Any] = {
                    "id": new_job_id(),
                    "owner_id": owner_id,
                    "program_id": program_id,
                    "hub": hub,
                    "group_name": group,
                    "project": project,
                    "backend": backend,
                    "status": JobState.QUEUED.value,
                    "params": params,
                    "log_level": log_level,
                    "runtime": runtime,
                    "cost": cost or int(program.cost),
                    "created": now,
                    "message_count": 0,
                }
                claim = claim_for is not None and conn.execute(_ANY_QUEUED).first() is None
                if claim:
                    values.update(status=JobState.RUNNING.value, instance_id=claim_for, started=now)
                conn.execute(JOBS.insert(), values)
                answer = Answer(201, {"id": values["id"], "backend": backend})
                if key:
                    conn.execute(
                        IDEMPOTENCY.insert(),
                        {
                            "user_id": owner_id,
                            "key": key,
                            "scope": scope,
                            "status_code": answer.status_code,
                            "body": json.dumps(answer.body),
                            "created": now,
                        },
                    )
            claimed = None
            if claim:
                values["group"] = values.pop("group_name")
                claimed = ClaimedJob(job=Job(**values), program_source=program.data)
            return answer, claimed
        except IntegrityError:
            # A concurrent request with the same key committed first (other instance or process).
            if key:
                stored = self.stored_answer(owner_id, key)
                if stored is not None:
                    return stored, None
            raise

    def list_jobs(
        self,
        user_id: str,
        limit: int,
        offset: int,
        pending: bool | None = None,
        program_id: str | None = None,
    ) -> tuple[list[Job], int]:
        """The user's jobs, newest first.

        Args:
            user_id: Owner.
            limit: Page size.
            offset: Jobs to skip.
            pending: True for QUEUED/RUNNING, False for final states, None for all.
            program_id: Only this program's jobs.

        Returns:
            The page and the total number of matching jobs.
        """
        conditions: list[Any] = [Job.owner_id == user_id]
        if pending is True:
            conditions.append(Job.status.in_([st.value for st in PENDING_STATES]))
        elif pending is False:
            conditions.append(Job.status.in_([st.value for st in FINAL_STATES]))
        if program_id is not None:
            conditions.append(Job.program_id == program_id)
        with self.read() as s:
            total = s.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
            rows = s.scalars(
                select(Job).where(*conditions).order_by(Job.n.desc()).offset(offset).limit(limit)
            )
            return list(rows), int(total)

    def get_job(
        self, job_id: str, user_id: str | None = None, *, light: bool = False
    ) -> Job | None:
        """The job, if it exists and (when ``user_id`` is given) belongs to that user.

        Args:
            job_id: The job.
            user_id: Only a job of this owner.
            light: Leave out ``result``, ``error`` and ``logs`` (``None`` on the returned object),
                which status answers do not need and which may be large.

        Returns:
            A detached job, or ``None``.
        """
        with self.core_read() as conn:
            query = _JOB_LIGHT_BY_ID if light else _JOB_BY_ID
            row = conn.execute(query, {"job_id": job_id}).first()
        if row is None or (user_id is not None and row.owner_id != user_id):
            return None
        return _job_from_row(row)

    def delete_job(self, job_id: str, user_id: str) -> Job | None:
        """Delete a job and its messages in any state.

        Returns:
            The job as it was before deletion, or ``None`` if the user has no such job.
        """
        with self.write() as s:
            job = s.scalars(select(Job).where(Job.id == job_id, Job.owner_id == user_id)).first()
            if job is None:
                return None
            s.execute(delete(Message).where(Message.job_id == job_id))
            s.delete(job)
            return job

    def cancel_job(self, job_id: str, user_id: str) -> tuple[Job | None, bool]:
        """Cancel a QUEUED or RUNNING job.

        Returns:
            ``(job, changed)``: the job after the call (``None`` if not found) and whether it was
            cancelled by this call (False: it was already final).
        """
        with self.write() as s:
            job = s.scalars(select(Job).where(Job.id == job_id, Job.owner_id == user_id)).first()
            if job is None:
                return None, False
            if job.is_final:
                return job, False
            job.status = JobState.CANCELLED.value
            job.reason_code = ReasonCode.CANCELLED_BY_USER.value
            job.ended = utcnow()
            return job, True

    def claim_jobs(self, instance_id: str, limit: int) -> list[ClaimedJob]:
        """Move up to ``limit`` QUEUED jobs (oldest first) to RUNNING for this instance.

        Safe with several instances on one database: PostgreSQL skips rows another instance has
        locked; SQLite's write lock makes the whole claim one serial step.
        """
        if limit <= 0:
            return []
        query = _CLAIMABLE_SKIP_LOCKED if self._skip_locked else _CLAIMABLE
        claimed: list[ClaimedJob] = []
        with self.core_write() as conn:
            rows = conn.execute(query, {"limit": limit}).all()
            if not rows:
                return []
            program_ids = sorted({row.program_id for row in rows})
            sources: dict[str, str] = {
                pid: data for pid, data in conn.execute(_SOURCES, {"program_ids": program_ids})
            }
            now = utcnow()
            running: list[int] = []
            for row in rows:
                job = _job_from_row(row)
                job.instance_id = instance_id
                job.started = now
                source = sources.get(job.program_id)
                if source is None:
                    # Deleted between submission and dispatch: nothing left to run.
                    job.status = JobState.FAILED.value
                    job.reason_code = ReasonCode.PROGRAM_ERROR.value
                    job.error = f"Program {job.program_id!r} was deleted before the job started."
                    job.ended = now
                    conn.execute(
                        update(JOBS)
                        .where(JOBS.c.n == job.n)
                        .values(
                            status=job.status,
                            reason_code=job.reason_code,
                            error=job.error,
                            instance_id=instance_id,
                            started=now,
                            ended=now,
                        )
                    )
                    continue
                job.status = JobState.RUNNING.value
                running.append(job.n)
                claimed.append(ClaimedJob(job=job, program_source=source))
            if running:
                conn.execute(_MARK_RUNNING, {"ns": running, "instance": instance_id, "now": now})
        return claimed

    def finish_job(
        self,
        job_id: str,
        status: JobState,
        *,
        reason_code: ReasonCode | None = None,
        result: str | None = None,
        error: str | None = None,
        logs: str | None = None,
    ) -> FinishOutcome:
        """Record how a job ended, unless it already ended (cancelled, ran too long).

        Logs are stored in every case, so a cancelled job keeps what it printed.

        Returns:
            What was done.
        """
        now = utcnow()
        values: dict[str, Any] = {
            "job_id": job_id,
            "new_status": status.value,
            "new_reason_code": reason_code.value if reason_code else None,
            "new_result": result,
            "new_error": error,
            "new_ended": now,
        }
        if logs is not None:
            values["new_logs"] = logs
        with self.core_write() as conn:
            # One conditional update in the usual case; the status test makes it safe against a
            # cancel committed meanwhile, by this or another instance.
            if self._update_returning:
                # The stored job comes back with the update: waiters get it with the event.
                query = _FINISH_RETURNING if logs is None else _FINISH_WITH_LOGS_RETURNING
                row = conn.execute(query, values).first()
                if row is not None:
                    job = _job_from_row(row)
                    return FinishOutcome(applied=True, exists=True, status=job.status, job=job)
            elif _rowcount(conn.execute(_FINISH if logs is None else _FINISH_WITH_LOGS, values)):
                return FinishOutcome(applied=True, exists=True, status=status.value)
            row = conn.execute(
                select(JOBS.c.status, JOBS.c.ended).where(JOBS.c.id == job_id)
            ).first()
            if row is None:
                return FinishOutcome(applied=False, exists=False, status=None)
            changes: dict[str, Any] = {}
            if logs is not None:
                changes["logs"] = logs
            if row.ended is None:
                changes["ended"] = now
            if changes:
                conn.execute(update(JOBS).where(JOBS.c.id == job_id).values(changes))
            return FinishOutcome(applied=False, exists=True, status=row.status)

    def end_running_job(
        self, job_id: str, status: JobState, reason_code: ReasonCode, error: str
    ) -> bool:
        """Move a RUNNING job to a final status at once (the watchdog's path).

        Returns:
            Whether the job was RUNNING.
        """
        with self.write() as s:
            changed = _rowcount(
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobState.RUNNING.value)
                    .values(
                        status=status.value,
                        reason_code=reason_code.value,
                        error=error,
                        ended=utcnow(),
                    )
                )
            )
        return bool(changed)

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Current status of each existing job among ``job_ids``."""
        if not job_ids:
            return {}
        with self.read() as s:
            rows = s.execute(select(Job.id, Job.status).where(Job.id.in_(list(job_ids))))
            return {job_id: status for job_id, status in rows}

    def status_counts(self) -> dict[str, int]:
        """Number of jobs per status."""
        with self.read() as s:
            rows = s.execute(select(Job.status, func.count()).group_by(Job.status))
            return {status: int(count) for status, count in rows}

    # -- messages ------------------------------------------------------------------------------

    def add_message(self, job_id: str, data: str) -> int | None:
        """Store one interim message with the job's next sequence number.

        Returns:
            The sequence number, or ``None`` if the job no longer exists.
        """
        return self.add_messages(job_id, [data])

    def add_messages(self, job_id: str, data: Sequence[str]) -> int | None:
        """Store interim messages in one transaction, numbered on from the job's last one.

        The job's ``message_count`` moves by ``len(data)`` in the same transaction, so the numbers
        stay contiguous even with several writers (the row update serialises them).

        Args:
            job_id: The job.
            data: The messages' JSON texts, in publish order.

        Returns:
            The sequence number of the first message (the others follow without gaps), or
            ``None`` if the job no longer exists or ``data`` is empty.
        """
        if not data:
            return None
        count = len(data)
        args = {"job_id": job_id, "count": count}
        with self.core_write() as conn:
            last: int | None
            if self._update_returning:
                last = conn.execute(_BUMP_MESSAGES_RETURNING, args).scalar()
            elif _rowcount(conn.execute(_BUMP_MESSAGES, args)):
                last = conn.execute(
                    select(JOBS.c.message_count).where(JOBS.c.id == job_id)
                ).scalar()
            else:
                last = None
            if last is None:
                return None
            first = int(last) - count + 1
            now = utcnow()
            conn.execute(
                MESSAGES.insert(),
                [
                    {"job_id": job_id, "seq": first + i, "data": text, "created": now}
                    for i, text in enumerate(data)
                ],
            )
            return first

    def messages_after(self, job_id: str, after: int, limit: int = 1000) -> list[tuple[int, str]]:
        """Stored messages with ``seq > after``, in order."""
        with self.core_read() as conn:
            rows = conn.execute(
                select(MESSAGES.c.seq, MESSAGES.c.data)
                .where(MESSAGES.c.job_id == job_id, MESSAGES.c.seq > after)
                .order_by(MESSAGES.c.seq)
                .limit(limit)
            )
            return [(seq, data) for seq, data in rows]

    def open_plain_cursor(self, job_id: str, grace_seconds: float) -> int | None:
        """Start a plain stream connection: return the delivery cursor.

        The first plain connection of a job that ended more than ``grace_seconds`` ago gets no
        replay: its cursor is moved past every message.

        Returns:
            The cursor (last delivered sequence number), or ``None`` if the job is gone.
        """
        with self.write() as s:
            job = s.scalars(select(Job).where(Job.id == job_id)).first()
            if job is None:
                return None
            if job.plain_cursor is None:
                stale = (
                    job.is_final
                    and job.ended is not None
                    and utcnow() - job.ended > timedelta(seconds=grace_seconds)
                )
                job.plain_cursor = job.message_count if stale else 0
            return job.plain_cursor

    def advance_plain_cursor(self, job_id: str, seq: int) -> bool:
        """Claim message ``seq`` for plain delivery (compare-and-set from ``seq - 1``).

        Returns:
            True if this caller now owns the delivery of ``seq``.
        """
        with self.core_write() as conn:
            changed = _rowcount(
                conn.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id, JOBS.c.plain_cursor == seq - 1)
                    .values(plain_cursor=seq)
                )
            )
        return bool(changed)

    def rewind_plain_cursor(self, job_id: str, seq: int) -> None:
        """Give message ``seq`` back after its frame could not be sent."""
        with self.write() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.plain_cursor == seq)
                .values(plain_cursor=seq - 1)
            )

    # -- instances and recovery ----------------------------------------------------------------

    def register_instance(self, instance_id: str) -> None:
        """Record this service instance (its jobs are failed by others when it dies)."""
        with self.write() as s:
            s.merge(
                Instance(
                    id=instance_id,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    started=utcnow(),
                    heartbeat=utcnow(),
                )
            )

    def heartbeat(self, instance_id: str) -> None:
        """Refresh this instance's lease."""
        with self.write() as s:
            s.execute(update(Instance).where(Instance.id == instance_id).values(heartbeat=utcnow()))

    def remove_instance(self, instance_id: str) -> None:
        """Forget this instance (on a clean shutdown)."""
        with self.write() as s:
            s.execute(delete(Instance).where(Instance.id == instance_id))

    def recover(self, instance_id: str, lease_seconds: float = 60.0) -> list[str]:
        """Fail the RUNNING jobs of service instances that are gone.

        An instance is gone when it ran on this host and its process no longer exists, or when its
        heartbeat is older than ``lease_seconds``.

        Returns:
            The ids of the jobs that were failed (``SERVICE_RESTARTED``, retryable).
        """
        host = socket.gethostname()
        now = utcnow()
        with self.write() as s:
            instances = {row.id: row for row in s.scalars(select(Instance))}
            dead = {
                iid
                for iid, row in instances.items()
                if iid != instance_id
                and (
                    (row.hostname == host and not _pid_alive(row.pid, row.started))
                    or now - row.heartbeat > timedelta(seconds=lease_seconds)
                )
            }
            running = s.scalars(select(Job).where(Job.status == JobState.RUNNING.value))
            failed: list[str] = []
            for job in running:
                if job.instance_id == instance_id:
                    continue
                if job.instance_id in instances and job.instance_id not in dead:
                    continue
                job.status = JobState.FAILED.value
                job.reason_code = ReasonCode.SERVICE_RESTARTED.value
                job.error = (
                    "The runtime service stopped while this job was running "
                    "(SERVICE_RESTARTED). The job did not finish; it is safe to submit it again."
                )
                job.ended = now
                failed.append(job.id)
            if dead:
                s.execute(delete(Instance).where(Instance.id.in_(dead)))
            return failed


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
    "DuplicateProgramError",
    "FinishOutcome",
    "ForbiddenError",
    "IdempotencyKey",
    "Instance",
    "Job",
    "Message",
    "Program",
    "ProgramInfo",
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
