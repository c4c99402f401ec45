"""Calipers and ellipses saved with a case, in millimetres from the image's DICOM calibration.

The browser sends the points; the server computes the length (``app.biometry.geometry``) and
the Z-score at the study's gestational age (``app.biometry.references``), so a saved value
never depends on the page's arithmetic. Creating, listing and removing are audited.
"""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.biometry.geometry import distance_mm, ellipse_mm
from app.biometry.references import REFERENCES, assess
from app.web.core.db import utcnow
from app.web.core.models import Image, Measurement, Study, User
from app.web.errors import Forbidden, InvalidInput, NotFound
from app.web.schemas import MeasurementIn, MeasurementOut
from app.web.services.audit import record_event

NO_CALIBRATION = (
    "this image has no physical scale (a PNG/JPEG export, or a DICOM file without an ultrasound "
    "region in centimetres), so it cannot be measured in millimetres"
)
OTHER_TITLE = "Other measurement"


def measurement_out(row: Measurement) -> MeasurementOut:
    reference = REFERENCES.get(row.name)
    fields: dict[str, object] = {
        "z_score": None,
        "percentile": None,
        "expected_mm": None,
        "within_limits": None,
    }
    note = ""
    if reference is not None:
        assessment = assess(row.name, row.value_mm, row.gestational_age_weeks)
        fields = {
            "z_score": assessment.z_score,
            "percentile": assessment.percentile,
            "expected_mm": assessment.expected_mm,
            "within_limits": assessment.within_limits,
        }
        note = assessment.note
    return MeasurementOut(
        id=row.id,
        study_id=row.study_id,
        image_id=row.image_id,
        name=row.name,  # type: ignore[arg-type]
        title=reference.title if reference else OTHER_TITLE,
        kind=row.kind,  # type: ignore[arg-type]
        points=[(float(x), float(y)) for x, y in row.points],
        value_mm=row.value_mm,
        axes_mm=list(row.axes_mm) if row.axes_mm else None,
        gestational_age_weeks=row.gestational_age_weeks,
        reference=reference.citation if reference else None,
        note=note,
        created_by=row.created_by.username,
        created_at=row.created_at,
        **fields,  # type: ignore[arg-type]
    )


def _live(db: Session, study_id: int) -> list[Measurement]:
    return list(
        db.scalars(
            select(Measurement)
            .where(Measurement.study_id == study_id, Measurement.deleted_at.is_(None))
            .options(selectinload(Measurement.created_by))
            .order_by(Measurement.id)
        )
    )


def study_measurements(db: Session, study_id: int) -> list[MeasurementOut]:
    """The study's measurements, oldest first, without an audit row (the case view has its own)."""
    return [measurement_out(row) for row in _live(db, study_id)]


def list_measurements(db: Session, study_id: int, viewer: User) -> list[MeasurementOut]:
    """The study's measurements; audits "measurement.list" (committed)."""
    if db.get(Study, study_id) is None:
        raise NotFound(f"study {study_id} does not exist")
    result = study_measurements(db, study_id)
    record_event(db, viewer, "measurement.list", study_id=study_id, count=len(result))
    db.commit()
    return result


def _check_points(body: MeasurementIn, image: Image) -> list[tuple[float, float]]:
    needed = 2 if body.kind == "distance" else 3
    if len(body.points) != needed:
        raise InvalidInput(f"a {body.kind} needs {needed} points (got {len(body.points)})")
    calibration = (image.source_metadata or {}).get("calibration")
    if not isinstance(calibration, dict):
        raise InvalidInput(NO_CALIBRATION)
    top, bottom, left, right = calibration["region"]
    points = [(float(x), float(y)) for x, y in body.points]
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInput("a point is not a number")
        # The caliper's ends must lie on the scan: outside the calibrated region the scale is unknown.
        if not (left <= x <= right and top <= y <= bottom):
            raise InvalidInput("a point lies outside the calibrated ultrasound region of the image")
    return points


def create_measurement(db: Session, study_id: int, user: User, body: MeasurementIn) -> MeasurementOut:
    """Save a caliper or ellipse; audits "measurement.create" (committed)."""
    study = db.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} does not exist")
    image = db.get(Image, body.image_id)
    if image is None or image.study_id != study_id:
        raise NotFound(f"image {body.image_id} is not an image of study {study_id}")
    reference = REFERENCES.get(body.name)
    if reference is not None and reference.kind != body.kind:
        raise InvalidInput(f"{reference.title} is measured as a {reference.kind}, not a {body.kind}")
    points = _check_points(body, image)
    calibration = image.source_metadata["calibration"]
    sx, sy = float(calibration["mm_per_px_x"]), float(calibration["mm_per_px_y"])
    axes: list[float] | None = None
    try:
        if body.kind == "distance":
            value = distance_mm(points[0], points[1], sx, sy)
        else:
            value, major, minor = ellipse_mm(points, sx, sy)
            axes = [major, minor]
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not value > 0:
        raise InvalidInput("the measurement has no length: its points coincide")
    row = Measurement(
        study_id=study_id,
        image_id=image.id,
        name=body.name,
        kind=body.kind,
        points=[list(p) for p in points],
        value_mm=value,
        axes_mm=axes,
        gestational_age_weeks=study.gestational_age_weeks,
        created_by_id=user.id,
    )
    db.add(row)
    db.flush()
    record_event(
        db,
        user,
        "measurement.create",
        study_id=study_id,
        measurement_id=row.id,
        image_id=image.id,
        name=body.name,
        value_mm=round(value, 2),
    )
    db.commit()
    db.refresh(row)
    return measurement_out(row)


def delete_measurement(db: Session, measurement_id: int, user: User) -> None:
    """Remove a measurement from the case (the row stays, marked); audits "measurement.delete".

    Only its author or an administrator may: a reader's measurement is part of their read."""
    row = db.get(Measurement, measurement_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"measurement {measurement_id} does not exist")
    if row.created_by_id != user.id and not user.is_admin:
        raise Forbidden("only the reader who made a measurement, or an administrator, may remove it")
    row.deleted_at = utcnow()
    row.deleted_by_id = user.id
    record_event(db, user, "measurement.delete", study_id=row.study_id, measurement_id=row.id, name=row.name)
    db.commit()
