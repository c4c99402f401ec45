"""The audit trail: every view and change of a case, and every login, becomes one row.

``record_event`` only adds the row to the caller's session, so the event commits
(or rolls back) together with the change it describes. Never put patient names
or IDs into ``detail``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.web.core.models import AuditEvent, User
from app.web.schemas import AuditOut


def record_event(
    db: Session, user: User | None, action: str, study_id: int | None = None, **detail: Any
) -> AuditEvent:
    """Add an audit row to ``db`` (not committed). ``action`` is dotted, e.g. "study.view"."""
    event = AuditEvent(
        user_id=user.id if user else None,
        username=user.username if user else None,
        action=action,
        study_id=study_id,
        detail=detail,
    )
    db.add(event)
    return event


def list_audit(
    db: Session, study_id: int | None = None, action: str | None = None, limit: int = 1000
) -> list[AuditOut]:
    """Audit events, oldest first; optionally for one study or one action."""
    query = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id).limit(limit)
    if study_id is not None:
        query = query.where(AuditEvent.study_id == study_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    return [
        AuditOut(
            id=e.id,
            at=e.at,
            username=e.username,
            action=e.action,
            study_id=e.study_id,
            detail=dict(e.detail or {}),
        )
        for e in db.scalars(query)
    ]
