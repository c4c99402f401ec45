"""reader studies: cases with a reference standard, readers, and every planned read

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

The reader study inside the app (app.web.services.reader_studies). Additive only: four new
tables, nothing existing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "reader_studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("modes", sa.JSON(), nullable=False),
        sa.Column("design", sa.String(length=16), nullable=False),
        sa.Column("washout_days", sa.Integer(), nullable=False),
        sa.Column("show_heatmaps", sa.Boolean(), nullable=False),
        sa.Column("idle_threshold_s", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.CheckConstraint("design IN ('crossover', 'sequential')", name=op.f("ck_reader_studies_design")),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_reader_studies_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_studies")),
    )
    op.create_table(
        "reader_study_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_study_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("reference_label", sa.String(length=64), nullable=False),
        sa.Column("reference_source", sa.String(length=16), nullable=False),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "reference_source IN ('import', 'diagnosis')", name=op.f("ck_reader_study_cases_reference_source")
        ),
        sa.ForeignKeyConstraint(
            ["reader_study_id"],
            ["reader_studies.id"],
            name=op.f("fk_reader_study_cases_reader_study_id_reader_studies"),
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["studies.id"], name=op.f("fk_reader_study_cases_study_id_studies")
        ),
        sa.ForeignKeyConstraint(
            ["analysis_id"], ["analyses.id"], name=op.f("fk_reader_study_cases_analysis_id_analyses")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_study_cases")),
        sa.UniqueConstraint("reader_study_id", "study_id", name="uq_reader_study_cases_study"),
    )
    op.create_index(op.f("ix_reader_study_cases_reader_study_id"), "reader_study_cases", ["reader_study_id"])
    op.create_index(op.f("ix_reader_study_cases_study_id"), "reader_study_cases", ["study_id"])
    op.create_table(
        "reader_study_readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reader_study_id"],
            ["reader_studies.id"],
            name=op.f("fk_reader_study_readers_reader_study_id_reader_studies"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reader_study_readers_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_study_readers")),
        sa.UniqueConstraint("reader_study_id", "user_id", name="uq_reader_study_readers_user"),
    )
    op.create_index(
        op.f("ix_reader_study_readers_reader_study_id"), "reader_study_readers", ["reader_study_id"]
    )
    op.create_index(op.f("ix_reader_study_readers_user_id"), "reader_study_readers", ["user_id"])
    op.create_table(
        "reader_study_reads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("session", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("shown_at", _TZ, nullable=True),
        sa.Column("last_seen_at", _TZ, nullable=True),
        sa.Column("idle_s", sa.Float(), nullable=False),
        sa.Column("first_label", sa.String(length=64), nullable=True),
        sa.Column("first_confidence", sa.Integer(), nullable=True),
        sa.Column("first_read_time_s", sa.Float(), nullable=True),
        sa.Column("revealed_at", _TZ, nullable=True),
        sa.Column("label", sa.String(length=64), nullable=True),
        sa.Column("confidence", sa.Integer(), nullable=True),
        sa.Column("answered_at", _TZ, nullable=True),
        sa.Column("read_time_s", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "mode IN ('unassisted', 'concurrent', 'second-read')", name=op.f("ck_reader_study_reads_mode")
        ),
        sa.CheckConstraint(
            "confidence IS NULL OR (confidence BETWEEN 1 AND 5)",
            name=op.f("ck_reader_study_reads_confidence"),
        ),
        sa.CheckConstraint(
            "first_confidence IS NULL OR (first_confidence BETWEEN 1 AND 5)",
            name=op.f("ck_reader_study_reads_first_confidence"),
        ),
        sa.ForeignKeyConstraint(
            ["reader_study_id"],
            ["reader_studies.id"],
            name=op.f("fk_reader_study_reads_reader_study_id_reader_studies"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_reader_study_reads_user_id_users")),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["reader_study_cases.id"],
            name=op.f("fk_reader_study_reads_case_id_reader_study_cases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_study_reads")),
        sa.UniqueConstraint(
            "reader_study_id", "user_id", "case_id", "mode", name="uq_reader_study_reads_plan"
        ),
    )
    op.create_index(
        "ix_reader_study_reads_order",
        "reader_study_reads",
        ["reader_study_id", "user_id", "session", "position"],
    )


def downgrade() -> None:
    op.drop_index("ix_reader_study_reads_order", table_name="reader_study_reads")
    op.drop_table("reader_study_reads")
    op.drop_index(op.f("ix_reader_study_readers_user_id"), table_name="reader_study_readers")
    op.drop_index(op.f("ix_reader_study_readers_reader_study_id"), table_name="reader_study_readers")
    op.drop_table("reader_study_readers")
    op.drop_index(op.f("ix_reader_study_cases_study_id"), table_name="reader_study_cases")
    op.drop_index(op.f("ix_reader_study_cases_reader_study_id"), table_name="reader_study_cases")
    op.drop_table("reader_study_cases")
    op.drop_table("reader_studies")
