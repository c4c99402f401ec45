"""Stored image PNGs: original (display RGB), thumbnail and Grad-CAM heatmap (RGBA). Every view is audited."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.web.core.models import Analysis, Image, ImagePredictionRow, User
from app.web.errors import Forbidden, NotFound
from app.web.runtime import Runtime
from app.web.services.audit import image_view_recorded, record_event
from app.web.services.studies import ai_withheld_for

ImageKind = Literal["original", "thumbnail", "heatmap"]


def image_png(db: Session, runtime: Runtime, image_id: int, kind: ImageKind, user: User) -> bytes:
    """PNG bytes of one image view; audits "image.view" (committed) once per case view and image."""
    image = db.get(Image, image_id)
    if image is None:
        raise NotFound(f"image {image_id} does not exist")
    if kind == "original":
        key: str | None = image.storage_key
    elif kind == "thumbnail":
        key = image.thumbnail_key
    else:
        if ai_withheld_for(db, image.study_id, user, runtime.settings.assistance_mode):
            raise Forbidden("record your preliminary read first; the AI heatmap is shown after it")
        key = db.scalar(
            select(ImagePredictionRow.heatmap_key)
            .join(Analysis, Analysis.id == ImagePredictionRow.analysis_id)
            .where(ImagePredictionRow.image_id == image_id, Analysis.status == "done")
            .order_by(Analysis.id.desc())
            .limit(1)
        )
        if key is None:
            raise NotFound("this image has no heatmap (not analysed yet, or the analysis failed)")
    try:
        data = runtime.store.read_bytes(key)
    except FileNotFoundError:
        raise NotFound("the stored image file is missing; contact the administrator") from None
    # Once per case view and image, not per request (a strip of thumbnails, a reload of the viewer).
    if not image_view_recorded(db, user, image.study_id, image.id, kind):
        record_event(db, user, "image.view", study_id=image.study_id, image_id=image.id, kind=kind)
        db.commit()
    return data
