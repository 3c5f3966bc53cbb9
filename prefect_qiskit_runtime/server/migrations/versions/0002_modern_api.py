"""The modern API's tables: sessions and batches, job extras, job tags, access tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The store's UTCDateTime is a naive DateTime holding UTC.
_TIME = sa.DateTime()


def upgrade() -> None:
    """Create runtime_sessions, job_extras, job_tags and access_tokens."""
    op.create_table(
        "runtime_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("backend", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("max_ttl", sa.Integer(), nullable=False),
        sa.Column("interactive_ttl", sa.Integer(), nullable=False),
        sa.Column("accepting_jobs", sa.Boolean(), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("closed_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runtime_sessions_owner_id", "runtime_sessions", ["owner_id"])
    op.create_table(
        "job_extras",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("private", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_job_extras_session_id", "job_extras", ["session_id"])
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "tag"),
    )
    op.create_index("ix_job_tags_tag", "job_tags", ["tag"])
    op.create_table(
        "access_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("api_token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["api_token_hash"], ["tokens.token_hash"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_access_tokens_api_token_hash", "access_tokens", ["api_token_hash"])
    op.create_index("ix_access_tokens_expires", "access_tokens", ["expires"])


def downgrade() -> None:
    """Drop the modern API's tables (their indexes go with them)."""
    for name in ("access_tokens", "job_tags", "job_extras", "runtime_sessions"):
        op.drop_table(name)
