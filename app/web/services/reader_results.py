"""A reader study's results and the export of every read (administrators only: these hold the
reference and every reader's answers)."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.readerstudy.results import UNAIDED_ARM, AiFact, ReadFact, study_results
from app.web.core.models import Analysis, ReaderStudy, ReaderStudyCase, ReaderStudyRead, User
from app.web.schemas import ReadRecordOut
from app.web.services.audit import record_event

INDETERMINATE = "indeterminate"


def export_reads(db: Session, study: ReaderStudy, admin: User, audit: bool = True) -> list[ReadRecordOut]:
    """Every planned read, answered or not, in reader and reading order. Audited ("reader_study.export")."""
    rows = db.scalars(
        select(ReaderStudyRead)
        .where(ReaderStudyRead.reader_study_id == study.id)
        .options(
            selectinload(ReaderStudyRead.user),
            selectinload(ReaderStudyRead.case).selectinload(ReaderStudyCase.study),
            selectinload(ReaderStudyRead.case)
            .selectinload(ReaderStudyCase.analysis)
            .selectinload(Analysis.verdict),
        )
        .order_by(ReaderStudyRead.user_id, ReaderStudyRead.session, ReaderStudyRead.position)
    )
    records = []
    for read in rows:
        verdict = read.case.analysis.verdict
        records.append(
            ReadRecordOut(
                read_id=read.id,
                reader=read.user.username,
                study_id=read.case.study_id,
                study_uid=read.case.study.study_uid,
                mode=read.mode,  # type: ignore[arg-type]
                session=read.session,
                position=read.position,
                reference=read.case.reference_label,
                ai_label=None if verdict is None else _ai_label(verdict.label, verdict.p_abnormal),
                ai_p_abnormal=None if verdict is None else verdict.p_abnormal,
                first_label=read.first_label,
                first_confidence=read.first_confidence,
                first_read_time_s=read.first_read_time_s,
                label=read.label,
                confidence=read.confidence,
                read_time_s=read.read_time_s,
                idle_s=read.idle_s,
                shown_at=read.shown_at,
                answered_at=read.answered_at,
            )
        )
    if audit:
        record_event(db, admin, "reader_study.export", reader_study_id=study.id, n_reads=len(records))
        db.commit()
    return records


def _ai_label(label: str, p_abnormal: float | None) -> str:
    return INDETERMINATE if p_abnormal is None else label


def reads_csv(records: list[ReadRecordOut]) -> str:
    buffer = io.StringIO()
    fields = list(ReadRecordOut.model_fields)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        row = record.model_dump(mode="json")
        writer.writerow({k: "" if row[k] is None else row[k] for k in fields})
    return buffer.getvalue()


def reader_study_results(
    db: Session, study: ReaderStudy, admin: User, classes: list[str], normal: str
) -> dict[str, Any]:
    """Results of the answered reads (audited as "reader_study.results")."""
    records = export_reads(db, study, admin, audit=False)
    reads = [
        ReadFact(r.reader, r.study_id, r.mode, r.reference, r.label, r.confidence, r.read_time_s)
        for r in records
        if r.label is not None and r.confidence is not None and r.read_time_s is not None
    ]
    # The unaided answers of second reads, kept as an arm of their own.
    reads += [
        ReadFact(
            r.reader,
            r.study_id,
            UNAIDED_ARM,
            r.reference,
            r.first_label,
            r.first_confidence,
            r.first_read_time_s,
        )
        for r in records
        if r.first_label is not None and r.first_confidence is not None and r.first_read_time_s is not None
    ]
    ai: dict[int, AiFact] = {}
    for r in records:
        if r.ai_label is not None:
            ai[r.study_id] = AiFact(r.study_id, r.reference, r.ai_label, r.ai_p_abnormal)
    result = study_results(reads, list(ai.values()), study.modes, classes, normal)
    record_event(db, admin, "reader_study.results", reader_study_id=study.id, n_reads=len(reads))
    db.commit()
    return result
