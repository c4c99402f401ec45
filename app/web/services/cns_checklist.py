"""The ISUOG basic CNS examination checklist a reader fills for a study, for the structured report.

Items follow the ISUOG practice guideline for the basic (screening) examination of the fetal
central nervous system (Malinger G et al., Ultrasound Obstet Gynecol 2020;56:476-84): head
size and shape, skull, the midline and its structures, the lateral ventricles, the posterior
fossa and the spine. Each save adds a row (the newest is current) and is audited.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.web.core.models import CnsChecklist, Study, User
from app.web.errors import InvalidInput, NotFound
from app.web.schemas import ChecklistIn, ChecklistItemOut, ChecklistOut
from app.web.services.audit import record_event

ISUOG_ITEMS: tuple[tuple[str, str], ...] = (
    ("head_shape", "Head shape"),
    ("skull", "Skull integrity (calvarium)"),
    ("midline_falx", "Midline falx"),
    ("cavum_septi_pellucidi", "Cavum septi pellucidi"),
    ("thalami", "Thalami"),
    ("lateral_ventricles", "Lateral ventricles"),
    ("choroid_plexus", "Choroid plexus"),
    ("cerebellum", "Cerebellum"),
    ("cisterna_magna", "Cisterna magna"),
    ("spine", "Spine"),
)
ANSWER_WORDS = {"normal": "Normal", "abnormal": "Abnormal", "not_seen": "Not visualised"}


def _out(study_id: int, row: CnsChecklist | None) -> ChecklistOut:
    answers = dict(row.items) if row is not None else {}
    return ChecklistOut(
        study_id=study_id,
        items=[ChecklistItemOut(key=k, label=label, answer=answers.get(k)) for k, label in ISUOG_ITEMS],  # type: ignore[arg-type]
        comment=row.comment if row is not None else "",
        recorded_by=row.recorded_by.username if row is not None else None,
        recorded_at=row.recorded_at if row is not None else None,
    )


def current_checklist(db: Session, study_id: int) -> ChecklistOut:
    """The newest checklist of the study (every item unanswered when none was saved); not audited."""
    row = db.scalar(
        select(CnsChecklist)
        .where(CnsChecklist.study_id == study_id)
        .options(selectinload(CnsChecklist.recorded_by))
        .order_by(CnsChecklist.id.desc())
        .limit(1)
    )
    return _out(study_id, row)


def get_checklist(db: Session, study_id: int, viewer: User) -> ChecklistOut:
    if db.get(Study, study_id) is None:
        raise NotFound(f"study {study_id} does not exist")
    result = current_checklist(db, study_id)
    record_event(db, viewer, "checklist.view", study_id=study_id)
    db.commit()
    return result


def save_checklist(db: Session, study_id: int, user: User, body: ChecklistIn) -> ChecklistOut:
    """Record the reader's answers (a new row); audits "checklist.save" (committed)."""
    if db.get(Study, study_id) is None:
        raise NotFound(f"study {study_id} does not exist")
    known = {key for key, _ in ISUOG_ITEMS}
    unknown = sorted(set(body.items) - known)
    if unknown:
        raise InvalidInput(f"unknown checklist item(s): {', '.join(unknown)}")
    row = CnsChecklist(
        study_id=study_id, items=dict(body.items), comment=body.comment, recorded_by_id=user.id
    )
    db.add(row)
    db.flush()
    record_event(db, user, "checklist.save", study_id=study_id, checklist_id=row.id, answered=len(body.items))
    db.commit()
    return current_checklist(db, study_id)
