"""Study routes: upload, worklist, case, diagnosis, audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from app.web.api.contract import ADMIN, CHANGE, SIGNED_IN, errors
from app.web.core.input_guard import IsoDate, RowId
from app.web.core.models import Study
from app.web.deps import ApiAdmin, ApiUser, ApiUserNoDb, DbSession, RuntimeDep
from app.web.errors import NotFound
from app.web.schemas import (
    AnalysisStatus,
    AuditOut,
    DiagnosisIn,
    DiagnosisOut,
    ReviewFilter,
    SortKey,
    StudyOut,
    StudySummaryOut,
    UploadOut,
)
from app.web.services.audit import list_audit
from app.web.services.diagnoses import record_diagnosis
from app.web.services.reports import study_report_pdf
from app.web.services.studies import get_study, list_studies
from app.web.services.upload_flow import upload_studies
from app.web.services.uploads import UploadOverrides

router = APIRouter(tags=["studies"])


@router.post(
    "/studies",
    status_code=202,
    response_model=UploadOut,
    summary="Upload a study",
    response_description="the studies created (one per patient and study) and the files refused",
    responses=errors(*CHANGE),
)
async def upload(
    files: Annotated[list[UploadFile], File(description="DICOM, PNG/JPEG files or ZIP archives")],
    user: ApiUserNoDb,
    runtime: RuntimeDep,
    patient_name: Annotated[str | None, Form()] = None,
    patient_id: Annotated[str | None, Form()] = None,
    study_date: Annotated[str | None, Form(description="YYYY-MM-DD")] = None,
    gestational_age_weeks: Annotated[str | None, Form()] = None,
) -> JSONResponse:
    """Store a study and queue it for analysis; returns at once (202) while the worker analyses it.

    Files are recognised by their bytes (DICOM, PNG/JPEG/BMP/TIFF, ZIP); files that cannot be
    used are listed in `rejected` with a reason. When none can be used the answer is 422.
    Typed patient and study fields fill in what the files lack. `Location` names the first study.
    """
    overrides = UploadOverrides.from_form(patient_name, patient_id, study_date, gestational_age_weeks)
    outcome = await upload_studies(runtime, files, overrides, user)
    first = outcome.studies[0]
    body = UploadOut(
        study_id=first.study_id,
        status=first.status,
        studies=[
            {"study_id": s.study_id, "status": s.status, "n_images": s.n_images, "duplicate": s.duplicate}
            for s in outcome.studies
        ],
        rejected=[{"filename": r.filename, "reason": r.reason} for r in outcome.rejected],
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/api/v1/studies/{first.study_id}"},
    )


@router.get(
    "/studies",
    response_model=list[StudySummaryOut],
    summary="The worklist",
    response_description="one row per study, most suspicious first unless `sort` says otherwise",
    responses=errors(*SIGNED_IN),
)
def worklist(
    user: ApiUser,
    db: DbSession,
    runtime: RuntimeDep,
    status: Annotated[AnalysisStatus | None, Query(description="the analysis status")] = None,
    label: Annotated[
        str | None,
        Query(description="AI verdict label, or 'indeterminate' for studies the model did not judge"),
    ] = None,
    review: Annotated[ReviewFilter | None, Query(description="with or without a final diagnosis")] = None,
    date_from: Annotated[IsoDate | None, Query(description="study date from, YYYY-MM-DD")] = None,
    date_to: Annotated[IsoDate | None, Query(description="study date to, YYYY-MM-DD")] = None,
    sort: Annotated[
        SortKey, Query(description="p_abnormal (most suspicious first), date (newest first) or status")
    ] = "p_abnormal",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> list[StudySummaryOut]:
    """Studies the user may see, with their AI verdict (withheld in second-read mode until the
    user's preliminary read) and whether a final diagnosis is recorded."""
    rows = list_studies(
        db,
        user,
        runtime.settings.assistance_mode,
        status=status,
        label=label,
        review=review,
        date_from=date_from,
        date_to=date_to,
        sort=sort,
        limit=limit,
        offset=offset,
        normal_label=runtime.model_card.normal_class if runtime.model_card is not None else "normal",
    )
    return rows


@router.get(
    "/studies/{study_id}",
    response_model=StudyOut,
    summary="One case",
    response_description="the study with its images, analysis, verdict and diagnoses",
    responses=errors(*SIGNED_IN, 404),
)
def study(study_id: RowId, user: ApiUser, db: DbSession, runtime: RuntimeDep) -> Response:
    """The whole case: patient, images with their per-image AI results, the verdict, the
    analysis (model and timings) and every diagnosis. The view is written to the audit log."""
    detail = get_study(db, study_id, user, runtime.settings.assistance_mode)
    # Already a validated StudyOut: written out here, in the request's thread, rather than
    # validated a second time (image by image) in another thread-pool hop by FastAPI.
    return Response(detail.model_dump_json(), media_type="application/json")


@router.post(
    "/studies/{study_id}/diagnosis",
    status_code=201,
    response_model=DiagnosisOut,
    summary="Record a diagnosis",
    response_description="the diagnosis as stored",
    responses=errors(*CHANGE, 404, 409),
)
def diagnose(
    study_id: RowId, body: DiagnosisIn, user: ApiUser, db: DbSession, runtime: RuntimeDep
) -> DiagnosisOut:
    """A preliminary read, the final diagnosis (sign-off) or an amendment with its reason.
    Nothing is overwritten. 409 when the case already has a final diagnosis (amend it instead),
    when there is none to amend, or when `based_on` is no longer the current version."""
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


@router.get(
    "/studies/{study_id}/report.pdf",
    response_class=Response,
    summary="The case's PDF report",
    response_description="a PDF: images and heatmaps, the AI verdict with its model, the signed diagnosis",
    responses={**errors(*SIGNED_IN, 404, 409), 200: {"content": {"application/pdf": {}}}},
)
def report_pdf(study_id: RowId, user: ApiUser, db: DbSession, runtime: RuntimeDep) -> Response:
    """The report the PACS also receives (as an Encapsulated PDF), with the model card's "not
    for clinical use" line when it has one. 409 until the analysis is done, and in second-read
    mode until you have recorded a read. The download is written to the audit log."""
    card = runtime.model_card
    pdf = study_report_pdf(
        db, runtime.store, study_id, user, runtime.settings.assistance_mode, card.banner if card else None
    )
    headers = {"Content-Disposition": f'attachment; filename="study-{study_id}-report.pdf"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get(
    "/studies/{study_id}/audit",
    response_model=list[AuditOut],
    summary="A case's audit trail (administrators)",
    response_description="the case's audit events, oldest first",
    responses=errors(*ADMIN, 404),
)
def audit_trail(study_id: RowId, admin: ApiAdmin, db: DbSession) -> list[AuditOut]:
    """Every view and change of the case: who, when, what."""
    if db.get(Study, study_id) is None:
        raise NotFound(f"study {study_id} does not exist")
    return list_audit(db, study_id=study_id)
