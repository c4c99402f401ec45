"""Study services for the worklist, the case page and the JSON API.

Functions return the API's models (``StudySummaryOut``, ``StudyOut``: app.web.schemas),
so the pages and the JSON API read the same values. Viewing a case is audited here.

Second-read mode: the AI's output (verdict and per-image predictions) is
withheld (``ai_withheld=True`` and the AI fields None) until the viewing user
has recorded a read (preliminary or final) for that study.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from sqlalchemy import Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, joinedload, selectinload

from app.web.core.models import (
    Analysis,
    Diagnosis,
    DicomPush,
    Image,
    ImagePredictionRow,
    Patient,
    ReaderStudyCase,
    ReaderStudyRead,
    Study,
    StudyClaim,
    User,
    VerdictRow,
)
from app.web.errors import Forbidden, NotFound
from app.web.schemas import (
    AnalysisOut,
    CalibrationOut,
    DiagnosisOut,
    ImageOut,
    PatientOut,
    PushOut,
    StudyOut,
    StudySummaryOut,
    VerdictOut,
)
from app.web.services.audit import record_event
from app.web.services.claims import claims_for

SortKey = Literal["p_abnormal", "date", "status"]
SORT_KEYS: tuple[str, ...] = ("p_abnormal", "date", "status")
ReviewFilter = Literal["reviewed", "unreviewed"]
INDETERMINATE = "indeterminate"


def image_url(image_id: int, kind: Literal["original", "thumbnail", "heatmap"]) -> str:
    """The API URL of an image's PNG (auth required; audited)."""
    return f"/api/v1/images/{image_id}/{kind}"


def user_has_read(db: Session, study_id: int, user: User) -> bool:
    return (
        db.scalar(
            select(Diagnosis.id)
            .where(Diagnosis.study_id == study_id, Diagnosis.signed_by_id == user.id)
            .limit(1)
        )
        is not None
    )


def open_reader_study_read(db: Session, study_id: int, user: User) -> ReaderStudyRead | None:
    """The user's reader-study read of this case that is shown and not yet answered, if any."""
    return db.scalar(
        select(ReaderStudyRead)
        .join(ReaderStudyCase, ReaderStudyCase.id == ReaderStudyRead.case_id)
        .where(
            ReaderStudyCase.study_id == study_id,
            ReaderStudyRead.user_id == user.id,
            ReaderStudyRead.shown_at.is_not(None),
            ReaderStudyRead.answered_at.is_(None),
        )
        .limit(1)
    )


def unread_reader_study_cases(db: Session, user: User, study_ids: list[int]) -> set[int]:
    """Of these cases, those the user still has reads to answer in a reader study (shown or not)."""
    if not study_ids:
        return set()
    return set(
        db.scalars(
            select(ReaderStudyCase.study_id)
            .join(ReaderStudyRead, ReaderStudyRead.case_id == ReaderStudyCase.id)
            .where(
                ReaderStudyRead.user_id == user.id,
                ReaderStudyRead.answered_at.is_(None),
                ReaderStudyCase.study_id.in_(study_ids),
            )
        )
    )


def refuse_while_in_reader_study(db: Session, study_id: int, user: User) -> None:
    """A reader does not see a case outside the reading page while they still have reads of it
    to answer: its case page and API would show the signed diagnoses (the reference may be made
    of them), the AI in a blinded mode, and the reader's own earlier answers in the PACS results."""
    if unread_reader_study_cases(db, user, [study_id]):
        raise Forbidden(
            "this case is in a reader study you are reading; until you have answered its reads it "
            "opens only from the reader-study page (Reader studies)"
        )


def ai_withheld_for(db: Session, study_id: int, user: User, mode: str) -> bool:
    """Second-read mode withholds the AI until the user's own read. A reader-study read in
    progress decides for its reader: a blinded one (unassisted, or second-read before the first
    answer) withholds the AI from the case API and pages too, so the reader cannot look it up
    there; an aided one shows it whatever the site's mode (its heatmap URLs must answer)."""
    open_read = open_reader_study_read(db, study_id, user)
    if open_read is not None:
        return not (
            open_read.mode == "concurrent"
            or (open_read.mode == "second-read" and open_read.first_label is not None)
        )
    return mode == "second-read" and not user_has_read(db, study_id, user)


def _verdict_out(verdict: VerdictRow | None) -> VerdictOut | None:
    if verdict is None:
        return None
    return VerdictOut(
        label=verdict.label,
        probabilities=dict(verdict.probabilities),
        p_abnormal=None if verdict.p_abnormal is None else float(verdict.p_abnormal),
        aggregation=verdict.aggregation,
        reason=verdict.reason,
        n_used=verdict.n_used,
        n_excluded=verdict.n_excluded,
        n_total=verdict.n_total,
        excluded_by_reason=dict(verdict.excluded_by_reason or {}),
        support=list(verdict.support or []),
    )


def _current_final(diagnoses: list[Diagnosis]) -> Diagnosis | None:
    finals = [d for d in diagnoses if d.kind in ("final", "amendment")]
    return finals[-1] if finals else None


def _summary_fields(study: Study, n_images: int, withheld: bool, blinded: bool = False) -> dict[str, Any]:
    """A worklist row's fields; ``verdict`` is None while queued/running/failed or when withheld.

    ``reviewed``: has a final diagnosis; ``final_label``: the latest final or amendment, None for
    a viewer still reading the case in a reader study (``blinded``, ``in_reader_study``).
    """
    analysis = study.latest_analysis
    current = _current_final(study.diagnoses)
    return dict(
        id=study.id,
        status=study.status,
        error=analysis.error if analysis else None,
        created_at=study.created_at,
        study_date=study.study_date,
        gestational_age_weeks=study.gestational_age_weeks,
        patient=PatientOut(
            id=study.patient.id,
            patient_id=study.patient.patient_id,
            name=study.patient.name,
            issuer=study.patient.issuer,
        ),
        n_images=n_images,
        verdict=None if withheld or analysis is None else _verdict_out(analysis.verdict),
        ai_withheld=withheld,
        reviewed=current is not None,
        final_label=current.label if current and not blinded else None,
        in_reader_study=blinded,
    )


WorklistSort = Literal["p_abnormal", "date", "status", "id", "patient", "ga", "reviewed"]
WORKLIST_SORTS: tuple[str, ...] = ("p_abnormal", "date", "status", "id", "patient", "ga", "reviewed")
VerdictFilter = str  # "abnormal" (any anomaly), "normal", "indeterminate" or a class name


@dataclass(frozen=True)
class WorklistQuery:
    """Every filter and order of the worklist; the page, its JSON feed and the API share it.

    ``q``: words that must each appear in the patient's name or ID, or "#12"/"12" for case 12.
    ``verdict``: "abnormal" (a determinate verdict other than ``normal_label``), "normal",
    "indeterminate" or one class name. ``min_p``: P(abnormal) at least this (0-1).
    ``assigned``: "me", "none" or a user id as text.
    """

    q: str = ""
    status: str | None = None
    verdict: VerdictFilter | None = None
    label: str | None = None  # exactly this verdict label (the API's filter)
    review: ReviewFilter | None = None
    date_from: date | None = None
    date_to: date | None = None
    min_p: float | None = None
    assigned: str | None = None
    sort: WorklistSort = "p_abnormal"
    descending: bool = True
    normal_label: str = "normal"


@dataclass(frozen=True)
class WorklistPage:
    items: list[StudySummaryOut]
    total: int  # cases that match the filters, on every page
    latest_id: int | None  # the newest case of all (the live feed's "new cases" marker)


def _suspicion_rank(normal_label: str) -> Any:
    """Where a case sits in "most suspicious first": an anomaly verdict, then no verdict from the
    model (indeterminate: a person must read it all), then normal, then not analysed yet."""
    return case(
        (VerdictRow.label.is_(None), 3),
        (VerdictRow.label == INDETERMINATE, 1),
        (VerdictRow.label == normal_label, 2),
        else_=0,
    )


def _worklist_select(viewer: User, mode: str, wq: WorklistQuery) -> Select[tuple[Study]]:
    """The filtered, ordered worklist query (no paging). In second-read mode the AI must not
    steer the first read: verdict and P(abnormal) filters are ignored and the suspicion order
    falls back to the date."""
    # The latest analysis of each case as a correlated lookup (index on analyses.study_id): a
    # GROUP BY subquery joined here made SQLite rescan every analysis per verdict row when a
    # verdict filter led the plan (10 s for 5,000 cases; benchmarks/bench_worklist.py).
    latest_id = select(func.max(Analysis.id)).where(Analysis.study_id == Study.id).scalar_subquery()
    has_final = exists().where(Diagnosis.study_id == Study.id, Diagnosis.kind.in_(("final", "amendment")))
    effective_date = func.coalesce(Study.study_date, func.date(Study.created_at))
    query = (
        select(Study)
        .join(Patient, Patient.id == Study.patient_id)
        .outerjoin(VerdictRow, VerdictRow.analysis_id == latest_id)
        .outerjoin(StudyClaim, StudyClaim.study_id == Study.id)
    )
    verdict, label, min_p, sort = wq.verdict, wq.label, wq.min_p, wq.sort
    if mode == "second-read":
        verdict, label, min_p = None, None, None
        sort = "date" if sort == "p_abnormal" else sort
    for word in wq.q.lower().split()[:8]:
        digits = word.lstrip("#")
        matches = [
            func.lower(func.coalesce(Patient.name, "")).contains(word, autoescape=True),
            func.lower(func.coalesce(Patient.patient_id, "")).contains(word, autoescape=True),
        ]
        if digits.isdigit() and len(digits) < 10:
            matches.append(Study.id == int(digits))
        query = query.where(or_(*matches))
    if wq.status:
        query = query.where(Study.status == wq.status)
    if verdict == "abnormal":
        query = query.where(VerdictRow.label.not_in((wq.normal_label, INDETERMINATE)))
    elif verdict == "normal":
        query = query.where(VerdictRow.label == wq.normal_label)
    elif verdict:
        query = query.where(VerdictRow.label == verdict)
    if label:
        query = query.where(VerdictRow.label == label)
    if min_p is not None:
        query = query.where(VerdictRow.p_abnormal >= min_p)
    if wq.review == "reviewed":
        query = query.where(has_final)
    elif wq.review == "unreviewed":
        query = query.where(~has_final)
    if wq.date_from:
        query = query.where(effective_date >= wq.date_from)
    if wq.date_to:
        query = query.where(effective_date <= wq.date_to)
    if wq.assigned == "me":
        query = query.where(StudyClaim.assigned_to_id == viewer.id)
    elif wq.assigned == "none":
        query = query.where(StudyClaim.assigned_to_id.is_(None))
    elif wq.assigned and wq.assigned.isdigit():
        query = query.where(StudyClaim.assigned_to_id == int(wq.assigned))
    desc = wq.descending
    if sort == "p_abnormal":
        rank = _suspicion_rank(wq.normal_label)
        p = VerdictRow.p_abnormal
        # Not analysed yet stays last in both directions.
        keys = [rank == 3, rank.desc() if not desc else rank, p.desc() if desc else p.asc()]
        return query.order_by(*keys, Study.id.desc())
    column: Any = {
        "date": effective_date,
        "status": Study.status,
        "id": Study.id,
        "patient": func.lower(func.coalesce(Patient.name, Patient.patient_id, "")),
        "ga": Study.gestational_age_weeks,
        "reviewed": has_final,
    }[sort]
    nulls_last = column.is_(None) if sort == "ga" else None
    keys = [nulls_last] if nulls_last is not None else []
    keys.append(column.desc() if desc else column.asc())
    return query.order_by(*keys, Study.id.desc())


def worklist_page(
    db: Session, viewer: User, mode: str, wq: WorklistQuery, *, limit: int = 50, offset: int = 0
) -> WorklistPage:
    """One page of the worklist with the true number of matching cases. Not audited (a list of
    cases is no view of one)."""
    query = _worklist_select(viewer, mode, wq)
    total = int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    ids = list(db.scalars(query.with_only_columns(Study.id).limit(limit).offset(offset)))
    latest_id = db.scalar(select(func.max(Study.id)))
    return WorklistPage(_summaries(db, viewer, mode, ids), total, latest_id)


def list_studies(
    db: Session,
    viewer: User,
    mode: str = "concurrent",
    *,
    status: str | None = None,
    label: str | None = None,
    review: ReviewFilter | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    sort: SortKey = "p_abnormal",
    limit: int = 200,
    offset: int = 0,
    normal_label: str = "normal",
) -> list[StudySummaryOut]:
    """The worklist as the JSON API lists it (``worklist_page`` has every filter and the total).

    Filters: ``status`` (queued|running|done|failed), ``label`` (AI verdict label, or
    "indeterminate"), ``review`` ("reviewed" = has a final diagnosis, "unreviewed"),
    ``date_from``/``date_to`` (study date, else upload date, inclusive). Sorts: "p_abnormal"
    (most suspicious first: anomalies, then indeterminate, then normal; unanalysed studies
    last), "date" (newest first), "status". In second-read mode the ``label`` filter is ignored
    and the "p_abnormal" sort falls back to "date".
    """
    wq = WorklistQuery(
        status=status,
        label=label,
        review=review,
        date_from=date_from,
        date_to=date_to,
        sort=sort,
        descending=sort != "status",
        normal_label=normal_label,
    )
    query = _worklist_select(viewer, mode, wq)
    ids = list(db.scalars(query.with_only_columns(Study.id).limit(limit).offset(offset)))
    return _summaries(db, viewer, mode, ids)


def count_studies(db: Session, viewer: User, mode: str, wq: WorklistQuery) -> int:
    query = _worklist_select(viewer, mode, wq)
    return int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


def _summaries(db: Session, viewer: User, mode: str, ids: list[int]) -> list[StudySummaryOut]:
    """Worklist rows of these cases, in this order."""
    if not ids:
        return []
    loaded = {
        s.id: s
        for s in db.scalars(
            select(Study)
            .where(Study.id.in_(ids))
            .options(
                selectinload(Study.patient),
                selectinload(Study.analyses).selectinload(Analysis.verdict),
                selectinload(Study.diagnoses),
            )
        )
    }
    studies = [loaded[i] for i in ids if i in loaded]
    counts = dict(
        db.execute(
            select(Image.study_id, func.count(Image.id))
            .where(Image.study_id.in_(ids))
            .group_by(Image.study_id)
        ).all()
    )
    read_by_viewer: set[int] = set()
    if mode == "second-read":
        read_by_viewer = set(
            db.scalars(
                select(Diagnosis.study_id).where(
                    and_(Diagnosis.signed_by_id == viewer.id, Diagnosis.study_id.in_(ids))
                )
            )
        )
    withheld = {s.id: mode == "second-read" and s.id not in read_by_viewer for s in studies}
    # A reader-study read in progress decides for its case (ai_withheld_for); the worklist is
    # rarely the page of a reader mid-read, so each open read is looked up on its own.
    open_cases = set(
        db.scalars(
            select(ReaderStudyCase.study_id)
            .join(ReaderStudyRead, ReaderStudyRead.case_id == ReaderStudyCase.id)
            .where(
                ReaderStudyRead.user_id == viewer.id,
                ReaderStudyRead.shown_at.is_not(None),
                ReaderStudyRead.answered_at.is_(None),
                ReaderStudyCase.study_id.in_(ids),
            )
        )
    )
    for study_id in open_cases:
        withheld[study_id] = ai_withheld_for(db, study_id, viewer, mode)
    # Cases the viewer still has to read in a reader study: neither the AI nor the signed
    # diagnosis (which may be the study's reference) is listed for them.
    in_reader_study = unread_reader_study_cases(db, viewer, ids)
    for study_id in in_reader_study:
        withheld[study_id] = True
    claims = claims_for(db, ids)
    out = []
    for s in studies:
        claim = claims.get(s.id)
        out.append(
            StudySummaryOut(
                **_summary_fields(
                    s, int(counts.get(s.id, 0)), withheld[s.id], blinded=s.id in in_reader_study
                ),
                assigned_to=claim.assigned_to if claim else None,
                reading_by=claim.locked_by if claim else None,
            )
        )
    return out


def _load_study(db: Session, study_id: int) -> Study:
    """The study with what a case shows but its images, in a fixed number of statements however
    many analyses and diagnoses it has (tests/test_web_query_count.py): the many-to-one and
    one-to-one rows (patient, verdict, signer) joined to their parent's statement, each list in
    one more. The images come with their results in one more (``_images``)."""
    study = db.scalar(
        select(Study)
        .where(Study.id == study_id)
        .options(
            joinedload(Study.patient),
            selectinload(Study.analyses).joinedload(Analysis.verdict),
            selectinload(Study.diagnoses).joinedload(Diagnosis.signed_by),
        )
    )
    if study is None:
        raise NotFound(f"study {study_id} does not exist")
    return study


def _images(
    db: Session, study_id: int, analysis: Analysis | None
) -> list[tuple[Image, ImagePredictionRow | None]]:
    """The study's images in order, each with the latest analysis's result for it (None while not
    analysed), in one statement; earlier analyses' rows are never read."""
    if analysis is None:
        in_order = select(Image).where(Image.study_id == study_id).order_by(Image.position, Image.id)
        return [(image, None) for image in db.scalars(in_order)]
    query = (
        select(Image, ImagePredictionRow)
        .outerjoin(
            ImagePredictionRow,
            and_(ImagePredictionRow.image_id == Image.id, ImagePredictionRow.analysis_id == analysis.id),
        )
        .where(Image.study_id == study_id)
        .order_by(Image.position, Image.id)
    )
    return [(image, prediction) for image, prediction in db.execute(query)]


def stored_exclusion(prediction: ImagePredictionRow) -> tuple[str | None, str | None]:
    """(reason key, words) of why the gate left the image out; (None, None) when it was used.

    Rows stored before the key was kept (migration 0005) have only the quality and OOD columns.
    """
    if prediction.error:
        return "failed", prediction.error
    if prediction.exclusion:
        return prediction.exclusion, prediction.exclusion_reason
    if prediction.quality_issue:
        return "quality", prediction.quality_issue
    if prediction.ood:
        return "ood", "unlike the images the model was trained on (out of distribution)"
    return None, None


def _source_facts(image: Image) -> dict[str, Any]:
    """Cine, plane and calibration facts ingestion recorded for the image (absent on older rows)."""
    meta = image.source_metadata or {}
    calibration = meta.get("calibration")
    return {
        "loop": image.source_sha256[:16] if image.frame is not None else None,
        "n_frames": meta.get("n_frames"),
        "frames_stored": meta.get("frames_stored"),
        "frame_time_ms": meta.get("frame_time_ms"),
        "plane": meta.get("plane"),
        "series_number": meta.get("series_number"),
        "instance_number": meta.get("instance_number"),
        "calibration": CalibrationOut(**calibration) if isinstance(calibration, dict) else None,
    }


def _image_out(image: Image, prediction: ImagePredictionRow | None, withheld: bool) -> ImageOut:
    """The AI fields stay None while not analysed, when the image failed (then ``error`` says why)
    or when withheld."""
    fields: dict[str, Any] = dict(
        id=image.id,
        position=image.position,
        filename=image.filename,
        frame=image.frame,
        width=image.width,
        height=image.height,
        image_url=image_url(image.id, "original"),
        thumbnail_url=image_url(image.id, "thumbnail"),
        label=None,
        probabilities=None,
        ood=None,
        ood_score=None,
        quality_issue=None,
        used_in_verdict=None,
        heatmap_url=None,
        error=None,
        lossy_compression=(image.source_metadata or {}).get("lossy_compression"),
        **_source_facts(image),
    )
    if prediction is not None and prediction.error:
        fields["error"] = prediction.error
    elif prediction is not None and not withheld:
        fields.update(
            label=prediction.label,
            probabilities=dict(prediction.probabilities or {}),
            ood=prediction.ood,
            ood_score=prediction.ood_score,
            quality_issue=prediction.quality_issue,
            used_in_verdict=prediction.used_in_verdict,
            exclusion=stored_exclusion(prediction)[0],
            exclusion_reason=stored_exclusion(prediction)[1],
            heatmap_url=image_url(image.id, "heatmap") if prediction.has_heatmap else None,
        )
    return ImageOut(**fields)


def diagnosis_out(d: Diagnosis) -> DiagnosisOut:
    return DiagnosisOut(
        id=d.id,
        kind=d.kind,
        label=d.label,
        agrees_with_ai=d.agrees_with_ai,
        confidence=d.confidence,
        notes=d.notes,
        signed_by=d.signed_by.username,
        signed_at=d.signed_at,
        time_to_decision_s=d.time_to_decision_s,
        amends_id=d.amends_id,
        amendment_reason=d.amendment_reason,
    )


def _latest_push(db: Session, study_id: int) -> PushOut | None:
    push = db.scalar(
        select(DicomPush).where(DicomPush.study_id == study_id).order_by(DicomPush.id.desc()).limit(1)
    )
    if push is None:
        return None
    return PushOut(
        destination=push.destination,
        status=push.status,
        attempts=push.attempts,
        n_instances=push.n_instances,
        last_error=push.last_error,
        next_attempt_at=push.next_attempt_at,
        sent_at=push.sent_at,
    )


def get_study(
    db: Session, study_id: int, viewer: User, mode: str = "concurrent", audit: bool = True
) -> StudyOut:
    """One case with images, AI output (unless withheld) and diagnoses. Audits "study.view" (committed)."""
    refuse_while_in_reader_study(db, study_id, viewer)
    study = _load_study(db, study_id)
    withheld = ai_withheld_for(db, study_id, viewer, mode)
    analysis = study.latest_analysis
    images = _images(db, study.id, analysis)
    detail = StudyOut(
        **_summary_fields(study, len(images), withheld),
        study_uid=study.study_uid,
        analysis=None
        if analysis is None
        else AnalysisOut(
            id=analysis.id,
            status=analysis.status,
            error=analysis.error,
            model_name=analysis.model_name,
            model_version=analysis.model_version,
            model_sha256=analysis.model_sha256,
            provider=analysis.provider,
            timings=dict(analysis.timings or {}),
            created_at=analysis.created_at,
            started_at=analysis.started_at,
            finished_at=analysis.finished_at,
        ),
        images=[_image_out(image, prediction, withheld) for image, prediction in images],
        diagnoses=[diagnosis_out(d) for d in study.diagnoses],
        pacs_push=_latest_push(db, study.id),
    )
    if audit:
        # The image strip's thumbnails are part of this view (services.audit.image_view_recorded).
        record_event(
            db,
            viewer,
            "study.view",
            study_id=study.id,
            ai_withheld=withheld,
            image_ids=[image.id for image, _ in images],
        )
        db.commit()
    return detail
