"""Tables of the modern Qiskit Runtime API: sessions and batches, job extras, access tokens.

They live beside the jobs of :mod:`.tables` on the same declarative ``Base``, so ``create_all``
(and a migration tool reading ``Base.metadata``) sees them like every other table. A job submitted
through the modern API gets one :class:`JobExtra` row (its session, privacy) and one
:class:`JobTag` row per tag; both go with the job (``ON DELETE CASCADE``), whichever API deletes
it. Access tokens are stored as their SHA-256 like API tokens, and die with the API token they were
issued for.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from prefect_qiskit_runtime.server.store.tables import Base, UTCDateTime, utcnow

#: Execution modes of a session, as the modern client names them.
SESSION_MODES = ("dedicated", "batch")


class RuntimeSession(Base):
    """A session or batch: a group of jobs on one backend that can be closed or cancelled."""

    __tablename__ = "runtime_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    backend: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    max_ttl: Mapped[int] = mapped_column(Integer)
    interactive_ttl: Mapped[int] = mapped_column(Integer)
    accepting_jobs: Mapped[bool] = mapped_column(Boolean, default=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set when the session is cancelled, or closed while none of its jobs was pending.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobExtra(Base):
    """What the modern API records about one of its jobs beyond the job row."""

    __tablename__ = "job_extras"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)


class JobTag(Base):
    """One tag of a job (tags filter job lists, so each is a row)."""

    __tablename__ = "job_tags"
    __table_args__ = (Index("ix_job_tags_tag", "tag"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(200), primary_key=True)


class AccessToken(Base):
    """A short-lived bearer token issued for an API token (stored as its SHA-256 hex digest)."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_token_hash: Mapped[str] = mapped_column(
        ForeignKey("tokens.token_hash", ondelete="CASCADE"), index=True
    )
    expires: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


SESSIONS = cast(Table, RuntimeSession.__table__)
JOB_EXTRAS = cast(Table, JobExtra.__table__)
JOB_TAGS = cast(Table, JobTag.__table__)
ACCESS_TOKENS = cast(Table, AccessToken.__table__)

__all__ = [
    "ACCESS_TOKENS",
    "JOB_EXTRAS",
    "JOB_TAGS",
    "SESSIONS",
    "SESSION_MODES",
    "AccessToken",
    "JobExtra",
    "JobTag",
    "RuntimeSession",
]
