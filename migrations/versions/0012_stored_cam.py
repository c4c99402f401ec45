"""stored Grad-CAM: the model-resolution map of each analysed image, heatmap drawn on first view

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-03

The worker used to draw and store a full-size RGBA heatmap PNG of every image it analysed,
which cost more than the inference itself. It now stores the predicted class's
model-resolution Grad-CAM (``cam``, h×w floats, a few hundred numbers) and the box the model
saw (``cam_box``, top, bottom, left, right); ``heatmap_key`` is filled when the heatmap is
first viewed (app.web.services.heatmaps). Rows stored before this revision keep their heatmap
PNG and NULL here. Additive only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cam", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("cam_box", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("image_predictions", schema=None) as batch_op:
        batch_op.drop_column("cam_box")
        batch_op.drop_column("cam")
