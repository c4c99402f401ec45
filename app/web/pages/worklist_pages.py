"""The worklist and the upload page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.web.deps import DbSession, PageUser, RuntimeDep
from app.web.pages import api_urls
from app.web.pages.case_pages import case_status_url, normal_class
from app.web.pages.rendering import render
from app.web.services.studies import list_studies

router = APIRouter()

WORKLIST_LIMIT = 500


@router.get("/", include_in_schema=False)
@router.get("/worklist", include_in_schema=False)
def worklist(request: Request, user: PageUser, db: DbSession, runtime: RuntimeDep) -> Response:
    mode = runtime.settings.assistance_mode
    summaries = list_studies(db, user, mode, sort="p_abnormal", limit=WORKLIST_LIMIT)
    normal = normal_class(runtime)
    return render(
        request,
        "worklist.html",
        user,
        active="worklist",
        # The same JSON the API returns, so worklist.js reads one shape for first paint and updates.
        rows=[s.model_dump(mode="json") for s in summaries],
        normal_class=normal,
        api_url=api_urls.studies(WORKLIST_LIMIT),
    )


@router.get("/upload", include_in_schema=False)
def upload(request: Request, user: PageUser) -> Response:
    return render(
        request,
        "upload.html",
        user,
        active="upload",
        api_url=api_urls.UPLOAD,
        status_api_url=case_status_url("{id}"),
    )
