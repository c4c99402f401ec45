"""Building a reader study: its cases with a reference standard, its readers, and the reading plan.

The reference comes from the request (study id → label), a CSV (StudyInstanceUID or study id),
or the case's signed final diagnosis (its current final or amendment). Each case must be
analysed: the analysis is frozen on the case, so the AI answer shown and evaluated is the one
that existed when the study was built.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.readerstudy.design import plan_reads
from app.readerstudy.reference import parse_reference_csv
from app.web.core.models import (
    Diagnosis,
    ReaderStudy,
    ReaderStudyCase,
    ReaderStudyRead,
    ReaderStudyReader,
    Study,
    User,
)
from app.web.errors import InvalidInput, NotFound
from app.web.schemas import ReaderStudyIn, ReaderStudyOut
from app.web.services.audit import record_event


def _csv_references(db: Session, text: str) -> dict[int, str]:
    try:
        rows = parse_reference_csv(text)
    except ValueError as error:
        raise InvalidInput(f"reference CSV: {error}") from None
    references: dict[int, str] = {}
    for row in rows:
        if row.key == "study_id":
            study_id = int(row.value)
        else:
            ids = list(db.scalars(select(Study.id).where(Study.study_uid == row.value)))
            if len(ids) != 1:
                why = "no case has" if not ids else "several cases have"
                raise InvalidInput(f"reference CSV line {row.line}: {why} this StudyInstanceUID")
            study_id = ids[0]
        references[study_id] = row.label
    return references


def _signed_label(db: Session, study_id: int) -> str | None:
    """The case's current final diagnosis or amendment (the head of its chain), if any."""
    return db.scalar(
        select(Diagnosis.label)
        .where(Diagnosis.study_id == study_id, Diagnosis.kind.in_(("final", "amendment")))
        .order_by(Diagnosis.id.desc())
        .limit(1)
    )


def _references(db: Session, body: ReaderStudyIn) -> tuple[list[int], dict[int, tuple[str, str]]]:
    """(case ids, case id → (label, source)). Given cases, or else every case a reference names."""
    given: dict[int, str] = dict(body.reference)
    if body.reference_csv:
        for study_id, label in _csv_references(db, body.reference_csv).items():
            if study_id in given and given[study_id] != label:
                raise InvalidInput(f"case {study_id} has two different reference labels")
            given[study_id] = label
    cases = list(dict.fromkeys(body.study_ids)) or sorted(given)
    if not cases:
        raise InvalidInput("name the cases (study_ids) or give a reference for them")
    outside = sorted(set(given) - set(cases))
    if outside:
        raise InvalidInput(f"references for cases not in the study: {outside[:10]}")
    references = {study_id: (label, "import") for study_id, label in given.items()}
    if body.reference_from_diagnoses:
        for study_id in cases:
            if study_id not in references and (label := _signed_label(db, study_id)) is not None:
                references[study_id] = (label, "diagnosis")
    missing = [study_id for study_id in cases if study_id not in references]
    if missing:
        raise InvalidInput(f"cases without a reference standard: {missing[:10]}")
    return cases, references


def _readers(db: Session, usernames: Sequence[str]) -> list[User]:
    names = list(dict.fromkeys(usernames))
    users = {u.username: u for u in db.scalars(select(User).where(User.username.in_(names)))}
    unknown = [n for n in names if n not in users or not users[n].active]
    if unknown:
        raise InvalidInput(f"no active user named: {', '.join(unknown)}")
    return [users[n] for n in names]


def create_reader_study(
    db: Session, body: ReaderStudyIn, admin: User, class_names: Sequence[str]
) -> ReaderStudy:
    """Validate, store the study, its cases, readers and every planned read (committed, audited)."""
    if len(set(body.modes)) != len(body.modes):
        raise InvalidInput("name each mode once")
    readers = _readers(db, body.readers)
    cases, references = _references(db, body)
    bad = sorted({label for label, _ in references.values() if label not in class_names})
    if bad:
        raise InvalidInput(f"unknown reference labels {bad}; choose from: {', '.join(class_names)}")
    studies = {s.id: s for s in db.scalars(select(Study).where(Study.id.in_(cases)))}
    frozen: dict[int, int] = {}
    for study_id in cases:
        study = studies.get(study_id)
        if study is None:
            raise NotFound(f"study {study_id} does not exist")
        analysis = study.latest_analysis
        if analysis is None or analysis.status != "done" or analysis.verdict is None:
            raise InvalidInput(f"study {study_id} is not analysed; only analysed cases can be read")
        frozen[study_id] = analysis.id

    study = ReaderStudy(
        name=body.name.strip(),
        modes=list(body.modes),
        design=body.design,
        washout_days=body.washout_days,
        show_heatmaps=body.show_heatmaps,
        idle_threshold_s=body.idle_threshold_s,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
        created_by_id=admin.id,
    )
    db.add(study)
    db.flush()
    case_rows = {
        study_id: ReaderStudyCase(
            reader_study_id=study.id,
            study_id=study_id,
            reference_label=references[study_id][0],
            reference_source=references[study_id][1],
            analysis_id=frozen[study_id],
        )
        for study_id in cases
    }
    db.add_all(case_rows.values())
    db.add_all(ReaderStudyReader(reader_study_id=study.id, user_id=u.id) for u in readers)
    db.flush()
    case_ids = {row.id: row for row in case_rows.values()}
    plan = plan_reads(sorted(case_ids), [u.id for u in readers], list(body.modes), body.design, study.seed)
    db.add_all(
        ReaderStudyRead(
            reader_study_id=study.id,
            user_id=p.reader,
            case_id=p.case,
            mode=p.mode,
            session=p.session,
            position=p.position,
            idle_s=0.0,
        )
        for p in plan
    )
    record_event(
        db,
        admin,
        "reader_study.create",
        reader_study_id=study.id,
        n_cases=len(cases),
        n_readers=len(readers),
        n_reads=len(plan),
        modes=list(body.modes),
        design=body.design,
    )
    db.commit()
    return study


def get_reader_study(db: Session, reader_study_id: int) -> ReaderStudy:
    study = db.get(ReaderStudy, reader_study_id)
    if study is None:
        raise NotFound(f"reader study {reader_study_id} does not exist")
    return study


def reader_study_out(db: Session, study: ReaderStudy) -> ReaderStudyOut:
    counts = db.execute(
        select(func.count(), func.count(ReaderStudyRead.answered_at)).where(
            ReaderStudyRead.reader_study_id == study.id
        )
    ).one()
    return ReaderStudyOut(
        id=study.id,
        name=study.name,
        modes=study.modes,  # type: ignore[arg-type]
        design=study.design,  # type: ignore[arg-type]
        washout_days=study.washout_days,
        show_heatmaps=study.show_heatmaps,
        idle_threshold_s=study.idle_threshold_s,
        seed=study.seed,
        n_cases=len(study.cases),
        readers=[r.user.username for r in study.readers],
        n_reads=int(counts[0]),
        n_done=int(counts[1]),
        created_at=study.created_at,
    )


def list_reader_studies(db: Session, user: User) -> list[ReaderStudyOut]:
    """Every study for an admin; for a reader, the studies they read."""
    query = select(ReaderStudy).order_by(ReaderStudy.id.desc())
    if not user.is_admin:
        query = query.join(ReaderStudyReader, ReaderStudyReader.reader_study_id == ReaderStudy.id).where(
            ReaderStudyReader.user_id == user.id
        )
    return [reader_study_out(db, s) for s in db.scalars(query)]
