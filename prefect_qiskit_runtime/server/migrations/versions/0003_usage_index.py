"""An index for the usage of the month: the jobs of an owner by their end.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ix_jobs_owner_ended (qiskit-ibm-runtime asks the usage before every job)."""
    op.create_index("ix_jobs_owner_ended", "jobs", ["owner_id", "ended"])


def downgrade() -> None:
    """Drop ix_jobs_owner_ended."""
    op.drop_index("ix_jobs_owner_ended", table_name="jobs")
