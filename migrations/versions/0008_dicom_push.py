"""dicom pushes: result objects sent to the configured PACS, with retries; patients' issuer

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

The C-STORE push of results (app.web.dicom.push) records each push, its attempts and its
outcome, which the case page shows. Patients get an ``issuer`` column (IssuerOfPatientID): new
uploads key a patient by PatientID within its issuer (or institution); patients stored before
keep their keys. Additive only: a new table and a nullable column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Patients are keyed by PatientID within its issuer; the issuer is kept for display.
    op.add_column("patients", sa.Column("issuer", sa.String(length=64), nullable=True))
    op.create_table(
        "dicom_pushes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("n_instances", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f("ck_dicom_pushes_status")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_dicom_pushes_study_id_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dicom_pushes")),
        sa.UniqueConstraint(
            "study_id", "destination", "revision", name="uq_dicom_pushes_study_destination_revision"
        ),
    )
    op.create_index(op.f("ix_dicom_pushes_study_id"), "dicom_pushes", ["study_id"], unique=False)
    op.create_index(
        op.f("ix_dicom_pushes_next_attempt_at"), "dicom_pushes", ["next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dicom_pushes_next_attempt_at"), table_name="dicom_pushes")
    op.drop_index(op.f("ix_dicom_pushes_study_id"), table_name="dicom_pushes")
    op.drop_table("dicom_pushes")
    # Not batch mode: recreating patients on SQLite would trip the foreign keys that point at it;
    # SQLite (3.35+) and PostgreSQL both drop a column in place.
    op.drop_column("patients", "issuer")
