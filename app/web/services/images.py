"""Stored images: original (display RGB PNG), thumbnail (JPEG; PNG on studies stored before) and
Grad-CAM heatmap (RGBA PNG, drawn on its first view: app.web.services.heatmaps). Every view is audited."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.web.core.models import Analysis, Image, ImagePredictionRow, ReaderStudy, User
from app.web.errors import Forbidden, NotFound
from app.web.runtime import Runtime
from app.web.services.audit import image_view_recorded, record_event
from app.web.services.heatmaps import heatmap_png
from app.web.services.studies import ai_withheld_for, open_reader_study_read

ImageKind = Literal["original", "thumbnail", "heatmap"]


def media_type_of(data: bytes) -> str:
    """The image type of stored bytes, by their signature (thumbnails changed format over time)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def _heatmap_prediction(db: Session, image: Image, user: User) -> ImagePredictionRow | None:
    """The result whose heatmap this user may see: during a reader-study read, the analysis frozen
    on the study's case (what the reader is shown), and none when the study hides heatmaps;
    otherwise the latest finished analysis."""
    query = select(ImagePredictionRow).where(ImagePredictionRow.image_id == image.id)
    read = open_reader_study_read(db, image.study_id, user)
    if read is not None:
        study = db.get(ReaderStudy, read.reader_study_id)
        if study is not None and not study.show_heatmaps:
            raise Forbidden("this reader study does not show heatmaps")
        return db.scalar(query.where(ImagePredictionRow.analysis_id == read.case.analysis_id))
    return db.scalar(
        query.join(Analysis, Analysis.id == ImagePredictionRow.analysis_id)
        .where(Analysis.status == "done")
        .order_by(Analysis.id.desc())
        .limit(1)
    )


def image_png(db: Session, runtime: Runtime, image_id: int, kind: ImageKind, user: User) -> bytes:
    """The bytes of one image view (``media_type_of`` names their type); audits "image.view"
    (committed) once per case view and image. A heatmap viewed for the first time is drawn and
    its key stored in the same commit."""
    image = db.get(Image, image_id)
    if image is None:
        raise NotFound(f"image {image_id} does not exist")
    try:
        if kind == "original":
            data = runtime.store.read_bytes(image.storage_key)
        elif kind == "thumbnail":
            data = runtime.store.read_bytes(image.thumbnail_key)
        else:
            if ai_withheld_for(db, image.study_id, user, runtime.settings.assistance_mode):
                raise Forbidden("record your preliminary read first; the AI heatmap is shown after it")
            prediction = _heatmap_prediction(db, image, user)
            heatmap = heatmap_png(runtime.store, prediction, image) if prediction is not None else None
            if heatmap is None:
                raise NotFound("this image has no heatmap (not analysed yet, or the analysis failed)")
            data = heatmap
    except FileNotFoundError:
        raise NotFound("the stored image file is missing; contact the administrator") from None
    # Once per case view and image, not per request (a strip of thumbnails, a reload of the viewer).
    first_view = not image_view_recorded(db, user, image.study_id, image.id, kind)
    if first_view:
        record_event(db, user, "image.view", study_id=image.study_id, image_id=image.id, kind=kind)
    if first_view or db.dirty:  # a heatmap drawn now keeps its stored key
        db.commit()
    return data
