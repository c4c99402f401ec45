"""The audit trail: every view and change of a case, and every login, becomes one row.

``record_event`` only adds the row to the caller's session, so the event commits
(or rolls back) together with the change it describes. Never put patient names
or IDs into ``detail``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, select
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
    return [_out(e) for e in db.scalars(query)]


def _out(e: AuditEvent) -> AuditOut:
    return AuditOut(
        id=e.id,
        at=e.at,
        username=e.username,
        action=e.action,
        study_id=e.study_id,
        detail=dict(e.detail or {}),
    )


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filters. ``username`` and ``action`` match exactly (an action ending in
    "." matches every action under it, e.g. "study."); dates are whole UTC days, inclusive."""

    username: str | None = None
    action: str | None = None
    study_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None


def _filtered(f: AuditFilter) -> Select[tuple[AuditEvent]]:
    query = select(AuditEvent)
    if f.username:
        query = query.where(func.lower(AuditEvent.username) == f.username.lower())
    if f.action:
        if f.action.endswith("."):
            query = query.where(AuditEvent.action.startswith(f.action, autoescape=True))
        else:
            query = query.where(AuditEvent.action == f.action)
    if f.study_id is not None:
        query = query.where(AuditEvent.study_id == f.study_id)
    if f.date_from:
        query = query.where(AuditEvent.at >= datetime.combine(f.date_from, time.min, UTC))
    if f.date_to:
        query = query.where(AuditEvent.at < datetime.combine(f.date_to + timedelta(days=1), time.min, UTC))
    return query


def audit_page(db: Session, f: AuditFilter, *, limit: int, offset: int) -> tuple[list[AuditOut], int]:
    """One page of events, newest first, and how many match in all."""
    query = _filtered(f)
    total = int(db.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = db.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
    return [_out(e) for e in rows], total


def audit_actions(db: Session) -> list[str]:
    """Every action the log holds, for the page's filter."""
    return sorted(db.scalars(select(AuditEvent.action).distinct()))


CSV_COLUMNS = ("id", "at", "username", "action", "case", "detail")
_CSV_BATCH = 2000


def audit_csv(db: Session, f: AuditFilter) -> Iterator[str]:
    """Every matching event as CSV, newest first, read in batches (the log can be large).
    ``detail`` is JSON; cells that a spreadsheet would run as a formula are prefixed with '."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    before: int | None = None
    while True:
        query = _filtered(f)
        if before is not None:
            query = query.where(AuditEvent.id < before)
        batch = list(db.scalars(query.order_by(AuditEvent.id.desc()).limit(_CSV_BATCH)))
        if not batch:
            return
        buffer.seek(0)
        buffer.truncate()
        for e in batch:
            detail = json.dumps(e.detail or {}, sort_keys=True, default=str)
            writer.writerow(
                [
                    e.id,
                    e.at.isoformat(),
                    _cell(e.username or ""),
                    _cell(e.action),
                    e.study_id or "",
                    _cell(detail),
                ]
            )
        yield buffer.getvalue()
        before = batch[-1].id


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


IMAGE_VIEW_WINDOW = timedelta(hours=1)


def image_view_recorded(db: Session, user: User, study_id: int, image_id: int, kind: str) -> bool:
    """Whether this view of the image is already in the audit trail for the user's current view
    of the case, so that it is recorded once per case view and image rather than per request.

    A thumbnail is part of the case view: the "study.view" row lists the images the strip shows,
    so thumbnails loaded within an hour of the user's latest view of the case are covered by it.
    The full image and the heatmap are recorded once for each (image, kind) after the user's
    latest "study.view" of the case (a second opening of the case records them again). A request
    with no case view before it (a script reading one image) is always recorded.
    """
    last_view = db.scalar(
        select(func.max(AuditEvent.id)).where(
            AuditEvent.study_id == study_id, AuditEvent.user_id == user.id, AuditEvent.action == "study.view"
        )
    )
    if last_view is None:
        return False
    if kind == "thumbnail":
        at = db.scalar(select(AuditEvent.at).where(AuditEvent.id == last_view))
        return at is not None and at >= datetime.now(UTC) - IMAGE_VIEW_WINDOW
    later = db.scalars(
        select(AuditEvent.detail).where(
            AuditEvent.study_id == study_id,
            AuditEvent.user_id == user.id,
            AuditEvent.action == "image.view",
            AuditEvent.id > last_view,
        )
    )
    return any((d or {}).get("image_id") == image_id and (d or {}).get("kind") == kind for d in later)
