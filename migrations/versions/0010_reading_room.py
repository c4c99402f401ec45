"""reading room: user names unique whatever their case; case assignment and soft reading locks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

``users`` gets a unique index on lower(username): "Alice" and "alice" can no longer be two
accounts. A database that already holds such a pair is not changed behind anyone's back (a
renamed account could no longer sign in, and the audit trail names people by user name): the
upgrade stops before it changes anything and names each pair, so that an administrator
renames one of each (``fetalcns users rename OLD NEW``) and upgrades again.

``study_claims`` (new table, additive): who a case is assigned to and who has it open now
(a soft lock that expires; app.web.services.claims).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


class DuplicateUserNames(RuntimeError):
    """User names that differ only in case; the upgrade cannot make them unique by itself."""


def _case_duplicates(connection: sa.engine.Connection) -> list[list[tuple[int, str]]]:
    rows = connection.execute(sa.text("SELECT id, username FROM users ORDER BY id")).all()
    groups: dict[str, list[tuple[int, str]]] = {}
    for user_id, name in rows:
        groups.setdefault(name.lower(), []).append((int(user_id), str(name)))
    return [group for group in groups.values() if len(group) > 1]


def upgrade() -> None:
    duplicates = _case_duplicates(op.get_bind())
    if duplicates:
        listed = "; ".join(", ".join(f"{name!r} (id {uid})" for uid, name in group) for group in duplicates)
        raise DuplicateUserNames(
            "migration 0010 makes user names unique regardless of case, but these accounts differ "
            f"only in case: {listed}. Nothing was changed. Rename all but one of each group with "
            "`fetalcns users rename OLD NEW` (the audit trail keeps the old name on past events), "
            "then run `fetalcns db upgrade` again."
        )
    op.create_index("uq_users_username_lower", "users", [sa.text("lower(username)")], unique=True)
    op.create_table(
        "study_claims",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("assigned_to_id", sa.Integer(), nullable=True),
        sa.Column("assigned_by_id", sa.Integer(), nullable=True),
        sa.Column("assigned_at", _TZ, nullable=True),
        sa.Column("lock_user_id", sa.Integer(), nullable=True),
        sa.Column("locked_at", _TZ, nullable=True),
        sa.Column("lock_expires_at", _TZ, nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_study_claims_study_id_studies")),
        sa.ForeignKeyConstraint(
            ["assigned_to_id"], ["users.id"], name=op.f("fk_study_claims_assigned_to_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["assigned_by_id"], ["users.id"], name=op.f("fk_study_claims_assigned_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["lock_user_id"], ["users.id"], name=op.f("fk_study_claims_lock_user_id_users")
        ),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_study_claims")),
    )
    op.create_index(op.f("ix_study_claims_assigned_to_id"), "study_claims", ["assigned_to_id"], unique=False)
    op.create_index(
        op.f("ix_study_claims_lock_expires_at"), "study_claims", ["lock_expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_study_claims_lock_expires_at"), table_name="study_claims")
    op.drop_index(op.f("ix_study_claims_assigned_to_id"), table_name="study_claims")
    op.drop_table("study_claims")
    op.drop_index("uq_users_username_lower", table_name="users")
