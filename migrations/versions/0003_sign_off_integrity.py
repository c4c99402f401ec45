"""sign-off integrity: one final diagnosis per study, each diagnosis amended at most once

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Before this revision two radiologists signing the same study at the same instant could both
store a "final" (the service read, then inserted), and two amendments of the same diagnosis
could both be stored. Such pairs are repaired before the unique indexes are created, keeping
every row and its signer: a later duplicate final becomes an amendment of the diagnosis before
it, and a later duplicate amendment amends the one before it, each with a reason that says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_FINAL_INDEX = "uq_diagnoses_one_final_per_study"
ONE_SUCCESSOR_INDEX = "uq_diagnoses_amends_id"
REPAIR_REASON = "signed at the same time as another diagnosis of this study; chained by migration 0003"


def _repair_chains(connection: sa.Connection) -> None:
    """Make each study's finals and amendments one chain, oldest first, as the service now does."""
    rows = connection.execute(
        sa.text(
            "SELECT id, study_id, kind, amends_id, amendment_reason FROM diagnoses "
            "WHERE kind IN ('final', 'amendment') ORDER BY study_id, id"
        )
    ).all()
    previous: dict[int, int] = {}  # study id -> id of its chain's head so far
    for row in rows:
        head = previous.get(row.study_id)
        if head is None:
            if row.kind == "amendment" and row.amends_id is None:
                pass  # an amendment with nothing before it cannot be chained; left as it was
            previous[row.study_id] = row.id
            continue
        if row.kind == "final" or row.amends_id != head:
            connection.execute(
                sa.text(
                    "UPDATE diagnoses SET kind = 'amendment', amends_id = :head, "
                    "amendment_reason = COALESCE(amendment_reason, :reason) WHERE id = :id"
                ),
                {"head": head, "reason": REPAIR_REASON, "id": row.id},
            )
        previous[row.study_id] = row.id


def upgrade() -> None:
    _repair_chains(op.get_bind())
    where = sa.text("kind = 'final'")
    op.create_index(
        ONE_FINAL_INDEX, "diagnoses", ["study_id"], unique=True, sqlite_where=where, postgresql_where=where
    )
    op.create_index(ONE_SUCCESSOR_INDEX, "diagnoses", ["amends_id"], unique=True)


def downgrade() -> None:
    op.drop_index(ONE_SUCCESSOR_INDEX, table_name="diagnoses")
    op.drop_index(ONE_FINAL_INDEX, table_name="diagnoses")
