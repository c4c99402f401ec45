"""Study services for the worklist, the case page and the JSON API.

Functions return plain dataclasses (``StudySummary``, ``StudyDetail``...), so
templates and the API read the same values. Viewing a case is audited here.

Second-read mode: the AI's output (verdict and per-image predictions) is
withheld (``ai_withheld=True`` and the AI fields None) until the viewing user
has recorded a read (preliminary or final) for that study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.orm import Session, selectinload

from app.web.core.models import Analysis, Diagnosis, Image, ImagePrediction, Study, User, Verdict
from app.web.errors import NotFound
from app.web.services.audit import record_event

SortKey = Literal["p_abnormal", "date", "status"]
SORT_KEYS: tuple[str, ...] = ("p_abnormal", "date", "status")
ReviewFilter = Literal["reviewed", "unreviewed"]


@dataclass(frozen=True)
class PatientInfo:
    id: int
    patient_id: str | None
    name: str | None


@dataclass(frozen=True)
class VerdictView:
    label: str
    probabilities: dict[str, float]
    p_abnormal: float | None  # None when indeterminate
    aggregation: str
    reason: str | None  # why the verdict is indeterminate
    n_used: int
    n_excluded: int
    support: list[int]  # image ids, most supportive first


@dataclass(frozen=True)
class StudySummary:
    """One worklist row. ``verdict`` is None while queued/running/failed or when withheld."""

    id: int
    status: str
    error: str | None
    created_at: datetime
    study_date: date | None
    gestational_age_weeks: float | None
    patient: PatientInfo
    n_images: int
    verdict: VerdictView | None
    ai_withheld: bool
    reviewed: bool  # has a final diagnosis
    final_label: str | None  # the current final diagnosis (latest amendment wins)


@dataclass(frozen=True)
class ImageView:
    id: int
    position: int
    filename: str
    frame: int | None
    width: int
    height: int
    image_url: str
    thumbnail_url: str
    # AI fields: None while not analysed, when the image failed, or when withheld.
    label: str | None = None
    probabilities: dict[str, float] | None = None
    ood: bool | None = None
    ood_score: float | None = None
    quality_issue: str | None = None
    used_in_verdict: bool | None = None
    heatmap_url: str | None = None
    error: str | None = None  # why this image could not be analysed


@dataclass(frozen=True)
class DiagnosisView:
    id: int
    kind: str
    label: str
    agrees_with_ai: bool | None
    confidence: int | None
    notes: str
    signed_by: str
    signed_at: datetime
    time_to_decision_s: float | None
    amends_id: int | None
    amendment_reason: str | None


@dataclass(frozen=True)
class AnalysisView:
    id: int
    status: str
    error: str | None
    model_name: str | None
    model_version: str | None
    model_sha256: str | None
    provider: str | None
    timings: dict[str, float]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class StudyDetail:
    summary: StudySummary
    study_uid: str | None
    analysis: AnalysisView | None
    images: list[ImageView] = field(default_factory=list)
    diagnoses: list[DiagnosisView] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.summary.id


def image_url(image_id: int, kind: Literal["original", "thumbnail", "heatmap"]) -> str:
    """The API URL of an image's PNG (auth required; audited)."""
    return f"/api/v1/images/{image_id}/{kind}"


def _latest_analysis_ids() -> Select[tuple[int, int]]:
    return select(Analysis.study_id, func.max(Analysis.id).label("analysis_id")).group_by(Analysis.study_id)


def user_has_read(db: Session, study_id: int, user: User) -> bool:
    return (
        db.scalar(
            select(Diagnosis.id)
            .where(Diagnosis.study_id == study_id, Diagnosis.signed_by_id == user.id)
            .limit(1)
        )
        is not None
    )


def ai_withheld_for(db: Session, study_id: int, user: User, mode: str) -> bool:
    return mode == "second-read" and not user_has_read(db, study_id, user)


def _verdict_view(verdict: Verdict | None) -> VerdictView | None:
    if verdict is None:
        return None
    return VerdictView(
        label=verdict.label,
        probabilities=dict(verdict.probabilities),
        p_abnormal=None if verdict.p_abnormal is None else float(verdict.p_abnormal),
        aggregation=verdict.aggregation,
        reason=verdict.reason,
        n_used=verdict.n_used,
        n_excluded=verdict.n_excluded,
        support=list(verdict.support or []),
    )


def _current_final(diagnoses: list[Diagnosis]) -> Diagnosis | None:
    finals = [d for d in diagnoses if d.kind in ("final", "amendment")]
    return finals[-1] if finals else None


def _summary(study: Study, n_images: int, withheld: bool) -> StudySummary:
    analysis = study.latest_analysis
    current = _current_final(study.diagnoses)
    return StudySummary(
        id=study.id,
        status=study.status,
        error=analysis.error if analysis else None,
        created_at=study.created_at,
        study_date=study.study_date,
        gestational_age_weeks=study.gestational_age_weeks,
        patient=PatientInfo(study.patient.id, study.patient.patient_id, study.patient.name),
        n_images=n_images,
        verdict=None if withheld or analysis is None else _verdict_view(analysis.verdict),
        ai_withheld=withheld,
        reviewed=current is not None,
        final_label=current.label if current else None,
    )


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
) -> list[StudySummary]:
    """The worklist.

    Filters: ``status`` (queued|running|done|failed), ``label`` (AI verdict label),
    ``review`` ("reviewed" = has a final diagnosis, "unreviewed"), ``date_from``/``date_to``
    (study date, else upload date, inclusive). Sorts: "p_abnormal" (most suspicious
    first; unanalysed studies last), "date" (newest first), "status".
    Listing is not audited; opening a case (get_study) is.
    In second-read mode the AI must not steer the first read, so the ``label`` filter
    is ignored and the "p_abnormal" sort falls back to "date".
    """
    if mode == "second-read":
        label = None
        sort = "date" if sort == "p_abnormal" else sort
    latest = _latest_analysis_ids().subquery()
    has_final = exists().where(Diagnosis.study_id == Study.id, Diagnosis.kind.in_(("final", "amendment")))
    effective_date = func.coalesce(Study.study_date, func.date(Study.created_at))
    query = (
        select(Study)
        .outerjoin(latest, latest.c.study_id == Study.id)
        .outerjoin(Verdict, Verdict.analysis_id == latest.c.analysis_id)
        .options(
            selectinload(Study.patient),
            selectinload(Study.analyses).selectinload(Analysis.verdict),
            selectinload(Study.diagnoses),
        )
    )
    if status:
        query = query.where(Study.status == status)
    if label:
        query = query.where(Verdict.label == label)
    if review == "reviewed":
        query = query.where(has_final)
    elif review == "unreviewed":
        query = query.where(~has_final)
    if date_from:
        query = query.where(effective_date >= date_from)
    if date_to:
        query = query.where(effective_date <= date_to)
    if sort == "p_abnormal":
        query = query.order_by(Verdict.p_abnormal.is_(None), Verdict.p_abnormal.desc(), Study.id.desc())
    elif sort == "status":
        query = query.order_by(Study.status, Study.id.desc())
    else:
        query = query.order_by(effective_date.desc(), Study.id.desc())
    studies = list(db.scalars(query.limit(limit).offset(offset)).unique())
    counts = dict(
        db.execute(
            select(Image.study_id, func.count(Image.id))
            .where(Image.study_id.in_([s.id for s in studies]))
            .group_by(Image.study_id)
        ).all()
    )
    read_by_viewer: set[int] = set()
    if mode == "second-read" and studies:
        read_by_viewer = set(
            db.scalars(
                select(Diagnosis.study_id).where(
                    and_(Diagnosis.signed_by_id == viewer.id, Diagnosis.study_id.in_([s.id for s in studies]))
                )
            )
        )
    return [
        _summary(s, int(counts.get(s.id, 0)), mode == "second-read" and s.id not in read_by_viewer)
        for s in studies
    ]


def _load_study(db: Session, study_id: int) -> Study:
    study = db.scalar(
        select(Study)
        .where(Study.id == study_id)
        .options(
            selectinload(Study.patient),
            selectinload(Study.images),
            selectinload(Study.analyses).selectinload(Analysis.verdict),
            selectinload(Study.analyses).selectinload(Analysis.predictions),
            selectinload(Study.diagnoses).selectinload(Diagnosis.signed_by),
        )
    )
    if study is None:
        raise NotFound(f"study {study_id} does not exist")
    return study


def _image_view(image: Image, prediction: ImagePrediction | None, withheld: bool) -> ImageView:
    base = ImageView(
        id=image.id,
        position=image.position,
        filename=image.filename,
        frame=image.frame,
        width=image.width,
        height=image.height,
        image_url=image_url(image.id, "original"),
        thumbnail_url=image_url(image.id, "thumbnail"),
    )
    if prediction is None:
        return base
    if prediction.error:
        return ImageView(**{**base.__dict__, "error": prediction.error})
    if withheld:
        return base
    return ImageView(
        **{
            **base.__dict__,
            "label": prediction.label,
            "probabilities": dict(prediction.probabilities or {}),
            "ood": prediction.ood,
            "ood_score": prediction.ood_score,
            "quality_issue": prediction.quality_issue,
            "used_in_verdict": prediction.used_in_verdict,
            "heatmap_url": image_url(image.id, "heatmap") if prediction.heatmap_key else None,
        }
    )


def diagnosis_view(d: Diagnosis) -> DiagnosisView:
    return DiagnosisView(
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


def get_study(
    db: Session, study_id: int, viewer: User, mode: str = "concurrent", audit: bool = True
) -> StudyDetail:
    """One case with images, AI output (unless withheld) and diagnoses. Audits "study.view" (committed)."""
    study = _load_study(db, study_id)
    withheld = ai_withheld_for(db, study_id, viewer, mode)
    analysis = study.latest_analysis
    predictions = {p.image_id: p for p in analysis.predictions} if analysis else {}
    detail = StudyDetail(
        summary=_summary(study, len(study.images), withheld),
        study_uid=study.study_uid,
        analysis=None
        if analysis is None
        else AnalysisView(
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
        images=[_image_view(img, predictions.get(img.id), withheld) for img in study.images],
        diagnoses=[diagnosis_view(d) for d in study.diagnoses],
    )
    if audit:
        record_event(db, viewer, "study.view", study_id=study.id, ai_withheld=withheld)
        db.commit()
    return detail
