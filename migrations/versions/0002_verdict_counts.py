"""verdict counts: n_total and excluded_by_reason on verdicts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

The verdict gate (app.inference.aggregate) records how many of a study's images were used
and why the others were left out. Verdicts stored before this revision get n_total =
n_used + n_excluded (what they counted) and an empty split, since their reasons were not kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added nullable, filled, then made NOT NULL: existing rows need a value first. Batch mode
    # rebuilds the table on SQLite (no ALTER COLUMN there); on PostgreSQL it issues plain ALTERs.
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("n_total", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("excluded_by_reason", sa.JSON(), nullable=True))
    op.execute(sa.text("UPDATE verdicts SET n_total = n_used + n_excluded, excluded_by_reason = '{}'"))
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.alter_column("n_total", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("excluded_by_reason", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("verdicts", schema=None) as batch_op:
        batch_op.drop_column("excluded_by_reason")
        batch_op.drop_column("n_total")
