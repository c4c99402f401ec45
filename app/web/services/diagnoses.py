"""Recording the radiologist's read. Rows are only ever added, never changed.

Kinds:
- "preliminary": a first read (in second-read mode it reveals the AI output to that user);
  not allowed once the study has a final diagnosis.
- "final": the signed diagnosis. If the study already has one, a new "final" is
  recorded as an "amendment" and needs a reason.
- "amendment": replaces the current final diagnosis (kept, linked by ``amends_id``);
  needs a reason.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.inference.aggregate import INDETERMINATE
from app.web.core.db import utcnow
from app.web.core.models import DIAGNOSIS_KINDS, AuditEvent, Diagnosis, Study, User
from app.web.errors import Conflict, InvalidInput, NotFound
from app.web.schemas import DiagnosisOut
from app.web.services.audit import record_event
from app.web.services.studies import diagnosis_out


def _first_view_at(db: Session, study_id: int, user: User) -> datetime | None:
    return db.scalar(
        select(AuditEvent.at)
        .where(
            AuditEvent.study_id == study_id, AuditEvent.user_id == user.id, AuditEvent.action == "study.view"
        )
        .order_by(AuditEvent.id)
        .limit(1)
    )


def _current(db: Session, study_id: int) -> Diagnosis | None:
    """The study's current final diagnosis or amendment: the head of its chain."""
    return db.scalar(
        select(Diagnosis)
        .where(Diagnosis.study_id == study_id, Diagnosis.kind.in_(("final", "amendment")))
        .order_by(Diagnosis.id.desc())
        .limit(1)
    )


def _signed_meanwhile(current: Diagnosis | None) -> Conflict:
    if current is None:
        return Conflict("someone else recorded a read at the same moment; reload the case and try again")
    when = current.signed_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    what = "signed" if current.kind == "final" else "amended"
    return Conflict(
        f"{current.signed_by.username} {what} this case at {when} ({current.label}) while you were "
        "reading it; your read was not recorded. Reload the case and, if you disagree, record an amendment"
    )


def record_diagnosis(
    db: Session,
    study_id: int,
    user: User,
    *,
    label: str,
    allowed_labels: tuple[str, ...] | list[str],
    agrees_with_ai: bool | None = None,
    confidence: int | None = None,
    notes: str = "",
    kind: str = "final",
    reason: str | None = None,
    based_on: int | None = None,
) -> DiagnosisOut:
    """Validate and add one diagnosis row (committed, audited as "diagnosis.record").

    ``allowed_labels`` are the model card's class names. Agreement is whether ``label`` equals
    the AI verdict of the latest analysis; a given ``agrees_with_ai`` that contradicts it is
    refused (InvalidInput), never stored.
    ``time_to_decision_s`` runs from this user's first view of the study.
    ``based_on`` is the current diagnosis id the reader saw (0: none); when another read
    became current since, nothing is recorded. Two signers at the same instant are told apart
    by the database's unique indexes (one final per study, one amendment per diagnosis): the
    second gets a Conflict naming who signed first.
    Raises NotFound, InvalidInput (bad label/confidence/missing reason) or Conflict.
    """
    study = db.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} does not exist")
    if kind not in DIAGNOSIS_KINDS:
        raise InvalidInput(f"kind must be one of: {', '.join(DIAGNOSIS_KINDS)}")
    if label not in allowed_labels:
        raise InvalidInput(f"unknown diagnosis {label!r}; choose one of: {', '.join(allowed_labels)}")
    if confidence is not None and not 1 <= confidence <= 5:
        raise InvalidInput("confidence must be between 1 (unsure) and 5 (certain)")
    notes = (notes or "").strip()
    reason = (reason or "").strip() or None
    if len(notes) > 10_000:
        raise InvalidInput("the notes are too long (at most 10,000 characters)")

    current = _current(db, study_id)
    if based_on is not None and based_on != (current.id if current is not None else 0):
        raise (
            _signed_meanwhile(current)
            if current is not None
            else Conflict("the diagnosis you were reading was withdrawn; reload the case")
        )
    amends_id: int | None = None
    if kind == "preliminary":
        if current is not None:
            raise Conflict("this study already has a final diagnosis; record an amendment instead")
    else:
        if current is not None:
            kind = "amendment"
            amends_id = current.id
        elif kind == "amendment":
            raise Conflict("there is no final diagnosis to amend yet; record a final diagnosis")
        if kind == "amendment" and not reason:
            raise InvalidInput("changing a final diagnosis is an amendment and needs a reason")

    analysis = study.latest_analysis
    verdict = analysis.verdict if analysis is not None and analysis.status == "done" else None
    if verdict is not None and verdict.label != INDETERMINATE:
        agrees = verdict.label == label
        if agrees_with_ai is not None and agrees_with_ai != agrees:
            said = "agree" if agrees_with_ai else "disagree"
            raise InvalidInput(
                f"you said you {said} with the AI ({verdict.label}) but chose {label}; the agreement "
                "follows from the diagnosis, so leave agrees_with_ai out or make it match"
            )
        agrees_with_ai = agrees
    elif agrees_with_ai is None and verdict is not None:
        agrees_with_ai = False  # no verdict from the model: nothing to agree with
    now = utcnow()
    first_view = _first_view_at(db, study_id, user)
    row = Diagnosis(
        study_id=study_id,
        analysis_id=analysis.id if analysis is not None else None,
        kind=kind,
        label=label,
        agrees_with_ai=agrees_with_ai,
        confidence=confidence,
        notes=notes,
        signed_by_id=user.id,
        signed_at=now,
        time_to_decision_s=(now - first_view).total_seconds() if first_view else None,
        amends_id=amends_id,
        amendment_reason=reason if kind == "amendment" else None,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError:
        # Another signer's row was committed between our read and this insert.
        db.rollback()
        raise _signed_meanwhile(_current(db, study_id)) from None
    record_event(
        db,
        user,
        "diagnosis.record",
        study_id=study_id,
        diagnosis_id=row.id,
        kind=kind,
        label=label,
        amends_id=amends_id,
    )
    db.commit()
    db.refresh(row)
    return diagnosis_out(row)
