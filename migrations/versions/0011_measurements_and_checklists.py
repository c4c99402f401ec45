"""measurements (calipers and ellipses in mm) and the ISUOG basic CNS checklist of a study

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03

The reading room's biometry (app.biometry, app.web.services.measurements) and the structured
report's checklist (app.web.services.cns_report). Additive only: two new tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "measurements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("value_mm", sa.Float(), nullable=False),
        sa.Column("axes_mm", sa.JSON(), nullable=True),
        sa.Column("gestational_age_weeks", sa.Float(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('distance', 'ellipse')", name=op.f("ck_measurements_kind")),
        sa.CheckConstraint(
            "name IN ('BPD', 'OFD', 'HC', 'ATRIUM', 'TCD', 'CM', 'OTHER')", name=op.f("ck_measurements_name")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_measurements_study_id_studies")),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name=op.f("fk_measurements_image_id_images")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_measurements_created_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["deleted_by_id"], ["users.id"], name=op.f("fk_measurements_deleted_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_measurements")),
    )
    op.create_index(op.f("ix_measurements_study_id"), "measurements", ["study_id"], unique=False)
    op.create_table(
        "cns_checklists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_cns_checklists_study_id_studies")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_cns_checklists_recorded_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cns_checklists")),
    )
    op.create_index(op.f("ix_cns_checklists_study_id"), "cns_checklists", ["study_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cns_checklists_study_id"), table_name="cns_checklists")
    op.drop_table("cns_checklists")
    op.drop_index(op.f("ix_measurements_study_id"), table_name="measurements")
    op.drop_table("measurements")
