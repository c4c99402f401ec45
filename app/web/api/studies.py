"""Study routes: upload, worklist, case, diagnosis, audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse

from app.web.core.input_guard import IsoDate, RowId
from app.web.core.models import ANALYSIS_STATUSES, Study
from app.web.deps import ApiAdmin, ApiUser, ApiUserNoDb, DbSession, RuntimeDep
from app.web.errors import InvalidInput, NotFound
from app.web.schemas import AuditOut, DiagnosisIn, DiagnosisOut, StudyOut, StudySummaryOut, UploadOut
from app.web.services.audit import list_audit
from app.web.services.diagnoses import record_diagnosis
from app.web.services.studies import SORT_KEYS, get_study, list_studies
from app.web.services.upload_flow import upload_studies
from app.web.services.uploads import UploadOverrides

router = APIRouter(tags=["studies"])


@router.post("/studies", status_code=202, response_model=UploadOut)
async def upload(
    files: Annotated[list[UploadFile], File(description="DICOM, PNG/JPEG files or ZIP archives")],
    user: ApiUserNoDb,
    runtime: RuntimeDep,
    patient_name: Annotated[str | None, Form()] = None,
    patient_id: Annotated[str | None, Form()] = None,
    study_date: Annotated[str | None, Form(description="YYYY-MM-DD")] = None,
    gestational_age_weeks: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """Store a study and queue it for analysis; returns at once (202) while the worker analyses it."""
    overrides = UploadOverrides.from_form(patient_name, patient_id, study_date, gestational_age_weeks)
    outcome = await upload_studies(runtime, files, overrides, user)
    first = outcome.studies[0]
    body = UploadOut(
        study_id=first.study_id,
        status=first.status,
        studies=[
            {"study_id": s.study_id, "status": s.status, "n_images": s.n_images} for s in outcome.studies
        ],
        rejected=[{"filename": r.filename, "reason": r.reason} for r in outcome.rejected],
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/api/v1/studies/{first.study_id}"},
    )


@router.get("/studies", response_model=list[StudySummaryOut])
def worklist(
    user: ApiUser,
    db: DbSession,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(description="queued | running | done | failed")] = None,
    label: Annotated[
        str | None,
        Query(description="AI verdict label, or 'indeterminate' for studies the model did not judge"),
    ] = None,
    review: Annotated[str | None, Query(description="reviewed | unreviewed")] = None,
    date_from: IsoDate | None = None,
    date_to: IsoDate | None = None,
    sort: Annotated[
        str, Query(description="p_abnormal (most suspicious first) | date | status")
    ] = "p_abnormal",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[StudySummaryOut]:
    if status is not None and status not in ANALYSIS_STATUSES:
        raise InvalidInput(f"status must be one of: {', '.join(ANALYSIS_STATUSES)}")
    if review is not None and review not in ("reviewed", "unreviewed"):
        raise InvalidInput("review must be 'reviewed' or 'unreviewed'")
    if sort not in SORT_KEYS:
        raise InvalidInput(f"sort must be one of: {', '.join(SORT_KEYS)}")
    rows = list_studies(
        db,
        user,
        runtime.settings.assistance_mode,
        status=status,
        label=label,
        review=review,  # type: ignore[arg-type]
        date_from=date_from,
        date_to=date_to,
        sort=sort,  # type: ignore[arg-type]
        limit=limit,
        offset=offset,
    )
    return rows


@router.get("/studies/{study_id}", response_model=StudyOut)
def study(study_id: RowId, user: ApiUser, db: DbSession, runtime: RuntimeDep) -> StudyOut:
    return get_study(db, study_id, user, runtime.settings.assistance_mode)


@router.post("/studies/{study_id}/diagnosis", status_code=201, response_model=DiagnosisOut)
def diagnose(
    study_id: RowId, body: DiagnosisIn, user: ApiUser, db: DbSession, runtime: RuntimeDep
) -> DiagnosisOut:
    return record_diagnosis(
        db,
        study_id,
        user,
        label=body.label,
        allowed_labels=runtime.class_names,
        agrees_with_ai=body.agrees_with_ai,
        confidence=body.confidence,
        notes=body.notes,
        kind=body.kind,
        reason=body.reason,
        based_on=body.based_on,
    )


@router.get("/studies/{study_id}/audit", response_model=list[AuditOut])
def audit_trail(study_id: RowId, admin: ApiAdmin, db: DbSession) -> list[AuditOut]:
    if db.get(Study, study_id) is None:
        raise NotFound(f"study {study_id} does not exist")
    return list_audit(db, study_id=study_id)
