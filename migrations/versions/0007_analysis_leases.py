"""analysis leases: who runs an analysis, until when, and how many times it was claimed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Before this revision a server put every "running" analysis back to "queued" when it started,
which took analyses from processes that were still running them (issue 13). Now a claim writes
a lease (``lease_owner``, ``lease_expires_at``) that the running worker renews with heartbeats;
only an analysis whose lease has expired is taken again. ``attempts`` counts the claims.

The unique constraints that make result writes idempotent, one prediction per (analysis, image)
and one verdict per analysis, exist since 0001 (``uq_image_predictions_analysis_image``,
``uq_verdicts_analysis_id``); the worker now writes results only while it holds the lease.

Analyses left "running" by an older server get no lease: a NULL expiry counts as expired, so
the first worker to look takes them again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, no batch mode: on SQLite a batch would copy and drop ``analyses``, which
    # the foreign keys of predictions, verdicts and diagnoses refuse while rows point at it.
    op.add_column("analyses", sa.Column("lease_owner", sa.String(length=64), nullable=True))
    op.add_column("analyses", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("analyses", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
    op.create_index(op.f("ix_analyses_lease_expires_at"), "analyses", ["lease_expires_at"], unique=False)


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place (ALTER TABLE ... DROP COLUMN), index first.
    op.drop_index(op.f("ix_analyses_lease_expires_at"), table_name="analyses")
    op.drop_column("analyses", "attempts")
    op.drop_column("analyses", "lease_expires_at")
    op.drop_column("analyses", "lease_owner")
