"""A reader's work in a reader study: the next read, its answer, and the reading clock.

Blinding, enforced here and therefore in the API as much as in the pages: a reader gets only
their own reads, one at a time; the case carries the images, and the AI fields only when the
read's mode shows them (concurrent: at once; second-read: after the first answer; unassisted:
never). The reference, other readers' answers and the reader's own earlier reads of the case
are never part of what a reader is sent. Times come from the server's clock (``now``; tests
pass their own).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.readerstudy.timing import reading_time_s, step
from app.web.core.db import utcnow
from app.web.core.models import (
    ImagePredictionRow,
    ReaderStudy,
    ReaderStudyCase,
    ReaderStudyRead,
    ReaderStudyReader,
    User,
)
from app.web.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.web.schemas import NextReadOut, ReadAnswerOut, ReadCaseOut, ReadImageOut
from app.web.services.audit import record_event
from app.web.services.reader_study_build import get_reader_study
from app.web.services.studies import _verdict_out, image_url


def _require_reader(db: Session, study: ReaderStudy, user: User) -> None:
    is_reader = db.scalar(
        select(ReaderStudyReader.id).where(
            ReaderStudyReader.reader_study_id == study.id, ReaderStudyReader.user_id == user.id
        )
    )
    if is_reader is None:
        raise Forbidden("you are not a reader of this study")


def ai_visible(study: ReaderStudy, read: ReaderStudyRead) -> bool:
    """Whether this read may show the AI now: concurrent always, second-read after the first answer."""
    return read.mode == "concurrent" or (read.mode == "second-read" and read.first_label is not None)


def case_view(db: Session, study: ReaderStudy, case: ReaderStudyCase, with_ai: bool) -> ReadCaseOut:
    """The case as a reader sees it: images, and the frozen analysis's AI fields when ``with_ai``.
    No patient identity, no dates that could name the patient, no diagnoses."""
    predictions: dict[int, ImagePredictionRow] = {}
    if with_ai:
        predictions = {p.image_id: p for p in case.analysis.predictions}
    images: list[ReadImageOut] = []
    for image in case.study.images:
        fields: dict[str, object] = dict(
            id=image.id,
            image_url=image_url(image.id, "original"),
            thumbnail_url=image_url(image.id, "thumbnail"),
            width=image.width,
            height=image.height,
        )
        prediction = predictions.get(image.id)
        if prediction is not None and not prediction.error:
            fields.update(label=prediction.label, probabilities=dict(prediction.probabilities or {}))
            if study.show_heatmaps and prediction.has_heatmap:
                fields["heatmap_url"] = image_url(image.id, "heatmap")
        images.append(ReadImageOut(**fields))  # type: ignore[arg-type]
    return ReadCaseOut(
        images=images,
        gestational_age_weeks=case.study.gestational_age_weeks,
        verdict=_verdict_out(case.analysis.verdict) if with_ai else None,
    )


def _remaining(db: Session, study_id: int, user: User) -> int:
    return int(
        db.scalar(
            select(func.count()).where(
                ReaderStudyRead.reader_study_id == study_id,
                ReaderStudyRead.user_id == user.id,
                ReaderStudyRead.answered_at.is_(None),
            )
        )
        or 0
    )


def _answered_by_case(db: Session, study: ReaderStudy, user: User) -> dict[int, list[tuple[int, datetime]]]:
    """The reader's answered reads of this study, as (session, answered_at) per case: one query
    for the washout checks of all their remaining reads."""
    rows = db.execute(
        select(ReaderStudyRead.case_id, ReaderStudyRead.session, ReaderStudyRead.answered_at).where(
            ReaderStudyRead.reader_study_id == study.id,
            ReaderStudyRead.user_id == user.id,
            ReaderStudyRead.answered_at.is_not(None),
        )
    )
    answered: dict[int, list[tuple[int, datetime]]] = {}
    for case_id, session, answered_at in rows:
        answered.setdefault(case_id, []).append((session, answered_at))
    return answered


def _washout_until(
    study: ReaderStudy, read: ReaderStudyRead, answered: dict[int, list[tuple[int, datetime]]]
) -> datetime | None:
    """When this read may be shown: washout days after the reader's latest earlier-session read
    of the same case (None: no earlier read)."""
    earlier = [at for session, at in answered.get(read.case_id, []) if session < read.session]
    return None if not earlier else max(earlier) + timedelta(days=study.washout_days)


def _next_out(
    db: Session, study: ReaderStudy, read: ReaderStudyRead, user: User, classes: list[str]
) -> NextReadOut:
    return NextReadOut(
        read_id=read.id,
        study_id=read.case.study_id,
        mode=read.mode,  # type: ignore[arg-type]
        session=read.session,
        remaining=_remaining(db, study.id, user),
        awaiting_final=read.mode == "second-read" and read.first_label is not None,
        classes=classes,
        study=case_view(db, study, read.case, ai_visible(study, read)),
    )


def next_read(
    db: Session, reader_study_id: int, user: User, classes: list[str], now: datetime | None = None
) -> NextReadOut | None:
    """The reader's open read (shown, not answered), else the next in their order that the washout
    allows; None when every read is answered. Conflict when the washout holds back what is left."""
    now = now or utcnow()
    study = get_reader_study(db, reader_study_id)
    _require_reader(db, study, user)
    mine = select(ReaderStudyRead).where(
        ReaderStudyRead.reader_study_id == study.id,
        ReaderStudyRead.user_id == user.id,
        ReaderStudyRead.answered_at.is_(None),
    )
    open_read = db.scalar(
        mine.where(ReaderStudyRead.shown_at.is_not(None)).order_by(ReaderStudyRead.id).limit(1)
    )
    if open_read is not None:
        clock = step(open_read.last_seen_at or now, open_read.idle_s, now, study.idle_threshold_s)
        open_read.last_seen_at, open_read.idle_s = clock.last_seen_at, clock.idle_s
        record_event(
            db,
            user,
            "reader_study.read_resume",
            study_id=open_read.case.study_id,
            reader_study_id=study.id,
            read_id=open_read.id,
            mode=open_read.mode,
        )
        db.commit()
        return _next_out(db, study, open_read, user, classes)
    earliest: datetime | None = None
    answered = _answered_by_case(db, study, user)
    for read in db.scalars(mine.order_by(ReaderStudyRead.session, ReaderStudyRead.position)):
        until = _washout_until(study, read, answered)
        if until is not None and until > now:
            earliest = until if earliest is None else min(earliest, until)
            continue
        claimed = db.execute(
            update(ReaderStudyRead)
            .where(ReaderStudyRead.id == read.id, ReaderStudyRead.shown_at.is_(None))
            .values(shown_at=now, last_seen_at=now, idle_s=0.0)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            db.rollback()
            raise Conflict("this read was opened at the same moment elsewhere; ask for the next read again")
        record_event(
            db,
            user,
            "reader_study.read_show",
            study_id=read.case.study_id,
            reader_study_id=study.id,
            read_id=read.id,
            mode=read.mode,
        )
        db.commit()
        db.refresh(read)
        return _next_out(db, study, read, user, classes)
    if earliest is not None:
        raise Conflict(
            f"the washout holds back your remaining reads; the next is available from "
            f"{earliest.strftime('%Y-%m-%d %H:%M UTC')}"
        )
    return None


def _own_read(db: Session, study: ReaderStudy, read_id: int, user: User) -> ReaderStudyRead:
    read = db.get(ReaderStudyRead, read_id)
    # Another reader's read answers 404 like a missing one: its existence is not the reader's business.
    if read is None or read.reader_study_id != study.id or read.user_id != user.id:
        raise NotFound(f"read {read_id} does not exist")
    return read


def ping(db: Session, reader_study_id: int, read_id: int, user: User, now: datetime | None = None) -> None:
    """The reader page's sign of activity: advances the read's clock (idle gaps counted)."""
    now = now or utcnow()
    study = get_reader_study(db, reader_study_id)
    _require_reader(db, study, user)
    read = _own_read(db, study, read_id, user)
    if read.shown_at is None or read.answered_at is not None:
        return
    clock = step(read.last_seen_at or now, read.idle_s, now, study.idle_threshold_s)
    read.last_seen_at, read.idle_s = clock.last_seen_at, clock.idle_s
    db.commit()


def answer_read(
    db: Session,
    reader_study_id: int,
    read_id: int,
    user: User,
    label: str,
    confidence: int,
    classes: list[str],
    now: datetime | None = None,
) -> ReadAnswerOut:
    """Record an answer. In a second read the first answer is the unaided one and reveals the AI
    (returned); the second is the final. Conditional updates make a double post answer 409
    instead of overwriting. Audited without labels of the reference."""
    now = now or utcnow()
    study = get_reader_study(db, reader_study_id)
    _require_reader(db, study, user)
    read = _own_read(db, study, read_id, user)
    if label not in classes:
        raise InvalidInput(f"unknown class {label!r}; choose one of: {', '.join(classes)}")
    if not 1 <= confidence <= 5:
        raise InvalidInput("confidence must be between 1 (unsure) and 5 (certain)")
    if read.shown_at is None:
        raise Conflict("this read has not been shown yet; ask for the next read first")
    if read.answered_at is not None:
        raise Conflict("this read is already answered")
    clock = step(read.last_seen_at or now, read.idle_s, now, study.idle_threshold_s)
    elapsed = reading_time_s(read.shown_at, clock.last_seen_at, clock.idle_s)
    first = read.mode == "second-read" and read.first_label is None
    values: dict[str, object] = dict(last_seen_at=clock.last_seen_at, idle_s=clock.idle_s)
    guard = ReaderStudyRead.first_label.is_(None) if first else ReaderStudyRead.answered_at.is_(None)
    if first:
        values.update(
            first_label=label, first_confidence=confidence, first_read_time_s=elapsed, revealed_at=now
        )
    else:
        values.update(label=label, confidence=confidence, answered_at=now, read_time_s=elapsed)
    done = db.execute(update(ReaderStudyRead).where(ReaderStudyRead.id == read.id, guard).values(**values))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        raise Conflict("this answer was already recorded")
    record_event(
        db,
        user,
        "reader_study.first_answer" if first else "reader_study.answer",
        study_id=read.case.study_id,
        reader_study_id=study.id,
        read_id=read.id,
        mode=read.mode,
        read_time_s=round(elapsed, 3),
        idle_s=round(clock.idle_s, 3),
    )
    db.commit()
    db.refresh(read)
    if first:
        return ReadAnswerOut(read_id=read.id, final=False, study=case_view(db, study, read.case, True))
    return ReadAnswerOut(read_id=read.id, final=True)
