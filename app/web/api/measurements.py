"""Biometry and the structured report's checklist: /api/v1/studies/{id}/measurements, /checklist."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.web.api.contract import CHANGE, SIGNED_IN, errors
from app.web.core.input_guard import RowId
from app.web.deps import ApiUser, DbSession
from app.web.schemas import ChecklistIn, ChecklistOut, MeasurementIn, MeasurementOut
from app.web.services.cns_checklist import get_checklist, save_checklist
from app.web.services.measurements import create_measurement, delete_measurement, list_measurements

router = APIRouter(tags=["biometry"])


@router.get(
    "/studies/{study_id}/measurements",
    response_model=list[MeasurementOut],
    summary="A case's measurements",
    response_description="the measurements, oldest first, with Z-scores at the study's gestational age",
    responses=errors(*SIGNED_IN, 404),
)
def measurements(study_id: RowId, user: ApiUser, db: DbSession) -> list[MeasurementOut]:
    """Calipers and ellipses saved with the case, in millimetres, each with its reference's
    Z-score and percentile when the gestational age is known and in range. Audited."""
    return list_measurements(db, study_id, user)


@router.post(
    "/studies/{study_id}/measurements",
    status_code=201,
    response_model=MeasurementOut,
    summary="Save a measurement",
    response_description="the measurement, its length computed by the server",
    responses=errors(*CHANGE, 404),
)
def new_measurement(study_id: RowId, body: MeasurementIn, user: ApiUser, db: DbSession) -> MeasurementOut:
    """A caliper (2 points) or an ellipse (both ends of one axis, then a point at the other
    semi-axis) on an image of the case, in pixels of the original image. The server computes
    the length from the image's DICOM ultrasound region (PhysicalDeltaX/Y); an image without
    one (PNG/JPEG) is refused with 422, and so are points outside the region. Audited."""
    return create_measurement(db, study_id, user, body)


@router.delete(
    "/measurements/{measurement_id}",
    status_code=204,
    summary="Remove a measurement",
    response_description="removed from the case (kept in the database, marked removed)",
    responses=errors(401, 403, 404, 413, 422),
)
def remove_measurement(measurement_id: RowId, user: ApiUser, db: DbSession) -> Response:
    """Take a measurement off the case and its report: your own, or anyone's for an
    administrator (403 otherwise). Audited."""
    delete_measurement(db, measurement_id, user)
    return Response(status_code=204)


@router.get(
    "/studies/{study_id}/checklist",
    response_model=ChecklistOut,
    summary="The case's ISUOG basic CNS checklist",
    response_description="every item with its answer (null: not answered)",
    responses=errors(*SIGNED_IN, 404),
)
def checklist(study_id: RowId, user: ApiUser, db: DbSession) -> ChecklistOut:
    """The reader's answers to the ISUOG basic CNS examination items, newest save. Audited."""
    return get_checklist(db, study_id, user)


@router.put(
    "/studies/{study_id}/checklist",
    response_model=ChecklistOut,
    summary="Record the ISUOG basic CNS checklist",
    response_description="the checklist as saved",
    responses=errors(*CHANGE, 404),
)
def put_checklist(study_id: RowId, body: ChecklistIn, user: ApiUser, db: DbSession) -> ChecklistOut:
    """Record the answers (normal, abnormal, not_seen) for the structured report; each save is
    kept, the newest is current. Audited."""
    return save_checklist(db, study_id, user, body)
