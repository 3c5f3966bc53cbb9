"""The store's tables as they were before migrations (what ``metadata.create_all`` made).

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The store's UTCDateTime is a naive DateTime holding UTC.
_TIME = sa.DateTime()


def upgrade() -> None:
    """Create users, tokens, programs, jobs, messages, idempotency_keys and instances."""
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("can_upload", sa.Boolean(), nullable=False),
        sa.Column("is_system", sa.Boolean(), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_tokens_user_id", "tokens", ["user_id"])
    op.create_table(
        "programs",
        sa.Column("n", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("creation_date", _TIME, nullable=False),
        sa.Column("update_date", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("n"),
        sa.UniqueConstraint("id"),
        sa.UniqueConstraint("owner_id", "name", name="uq_program_owner_name"),
    )
    op.create_index("ix_programs_owner_id", "programs", ["owner_id"])
    op.create_table(
        "jobs",
        sa.Column("n", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("program_id", sa.String(length=100), nullable=False),
        sa.Column("hub", sa.String(length=100), nullable=False),
        sa.Column("group_name", sa.String(length=100), nullable=False),
        sa.Column("project", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("log_level", sa.String(length=20), nullable=True),
        sa.Column("runtime", sa.String(length=200), nullable=True),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.Column("started", _TIME, nullable=True),
        sa.Column("ended", _TIME, nullable=True),
        sa.Column("reason_code", sa.String(length=40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("logs", sa.Text(), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("plain_cursor", sa.Integer(), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("n"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_jobs_owner_n", "jobs", ["owner_id", "n"])
    op.create_index("ix_jobs_program_id", "jobs", ["program_id"])
    op.create_index("ix_jobs_status_n", "jobs", ["status", "n"])
    op.create_table(
        "messages",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "seq"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key"),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", _TIME, nullable=False),
        sa.Column("heartbeat", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    """Drop every table of the store."""
    for name in ("instances", "idempotency_keys", "messages", "jobs", "programs", "tokens"):
        op.drop_table(name)
    op.drop_table("users")  # last: tokens and programs refer to it
