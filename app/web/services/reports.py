"""The PDF report of a case, for the API and the case page (the same PDF the PACS gets as an
Encapsulated PDF). Downloading it is audited."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.web.core.models import Study, User
from app.web.core.storage import ContentStore
from app.web.errors import Conflict, NotFound
from app.web.services.audit import record_event
from app.web.services.studies import refuse_while_in_reader_study


def study_report_pdf(
    db: Session, store: ContentStore, study_id: int, viewer: User, mode: str, banner: str | None
) -> bytes:
    """The report's bytes. NotFound for an unknown study; Conflict while there is nothing to
    report (analysis not done) or while the AI output is withheld from ``viewer`` (second read)."""
    from app.web.dicom.case_record import load_case_record
    from app.web.dicom.pdf import ReaderSections, build_pdf
    from app.web.services.cns_checklist import current_checklist
    from app.web.services.measurements import study_measurements

    study = db.scalar(select(Study).where(Study.id == study_id).options(selectinload(Study.patient)))
    if study is None:
        raise NotFound(f"study {study_id} does not exist")
    refuse_while_in_reader_study(db, study_id, viewer)
    record = load_case_record(db, store, study, viewer, mode)
    if record is None:
        raise Conflict(
            "no report yet: the analysis is not done, or the AI output is withheld until you record a read"
        )
    # The structured report: the reader's ISUOG checklist and biometry join the AI's findings.
    reader = ReaderSections(current_checklist(db, study_id), study_measurements(db, study_id))
    pdf = build_pdf(record, store, banner, reader)
    record_event(db, viewer, "study.report_pdf", study_id=study_id, analysis_id=record.analysis.id)
    db.commit()
    return pdf
