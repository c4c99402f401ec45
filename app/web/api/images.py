"""Images: original (display RGB PNG), thumbnail (JPEG) and Grad-CAM heatmap (RGBA PNG).

Every view is audited."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import Response

from app.web.api.contract import SIGNED_IN, errors
from app.web.core.input_guard import RowId
from app.web.deps import ApiUser, DbSession, RuntimeDep
from app.web.services.images import ImageKind, image_png, media_type_of

router = APIRouter(tags=["images"])

_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "original": ("The image as displayed", "The stored image in display RGB, full size."),
    "thumbnail": (
        "A thumbnail",
        "The image scaled down for the case page's strip: a JPEG (a PNG for images stored before "
        "thumbnails were JPEG).",
    ),
    "heatmap": (
        "The Grad-CAM heatmap",
        "Where the model looked, as an RGBA PNG of the original's size (the browser sets the "
        "opacity), drawn from the stored low-resolution map on its first view. 404 while the "
        "image is not analysed or when its analysis failed; 403 in second-read mode until the "
        "user's preliminary read.",
    ),
}


def _route(kind: ImageKind) -> Callable[..., Response]:
    def endpoint(image_id: RowId, user: ApiUser, db: DbSession, runtime: RuntimeDep) -> Response:
        data = image_png(db, runtime, image_id, kind, user)
        return Response(data, media_type=media_type_of(data))

    endpoint.__name__ = f"image_{kind}"
    return endpoint


_MEDIA: dict[str, tuple[str, ...]] = {
    "original": ("image/png",),
    "thumbnail": ("image/jpeg", "image/png"),
    "heatmap": ("image/png",),
}

for _kind in ("original", "thumbnail", "heatmap"):
    _codes = (*SIGNED_IN, 404, 403) if _kind == "heatmap" else (*SIGNED_IN, 404)
    router.add_api_route(
        f"/images/{{image_id}}/{_kind}",
        _route(_kind),  # type: ignore[arg-type]
        methods=["GET"],
        response_class=Response,
        responses={
            200: {
                "content": {
                    media: {"schema": {"type": "string", "format": "binary"}} for media in _MEDIA[_kind]
                }
            },
            **errors(*_codes),
        },
        summary=_DESCRIPTIONS[_kind][0],
        description=_DESCRIPTIONS[_kind][1] + " The view is written to the audit log.",
        response_description="the image",
    )
