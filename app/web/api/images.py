"""Image PNGs: original (display RGB), thumbnail and Grad-CAM heatmap (RGBA). Every view is audited."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import Response

from app.web.core.input_guard import RowId
from app.web.deps import ApiUser, DbSession, RuntimeDep
from app.web.services.images import ImageKind, image_png

router = APIRouter(tags=["images"])


def _route(kind: ImageKind) -> Callable[..., Response]:
    def endpoint(image_id: RowId, user: ApiUser, db: DbSession, runtime: RuntimeDep) -> Response:
        data = image_png(db, runtime, image_id, kind, user)
        return Response(data, media_type="image/png")

    endpoint.__name__ = f"image_{kind}"
    return endpoint


for _kind in ("original", "thumbnail", "heatmap"):
    router.add_api_route(
        f"/images/{{image_id}}/{_kind}",
        _route(_kind),  # type: ignore[arg-type]
        methods=["GET"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
        summary=f"{_kind} PNG",
    )
