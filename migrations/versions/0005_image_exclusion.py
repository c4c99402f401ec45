"""image exclusion: why each analysed image was left out of the verdict

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

The gate (app.inference.analysis.exclusion_key) gives each left-out image one reason key
(not_ultrasound, quality, view, ood, flagged) and words a radiologist reads. Rows stored before
this revision keep NULL and the pages fall back to the ood/quality columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("exclusion", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("exclusion_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.drop_column("exclusion_reason")
        batch_op.drop_column("exclusion")
