"""The worklist and the upload page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.web.core.auth import require_user_page
from app.web.core.models import User
from app.web.deps import get_db, get_runtime
from app.web.pages import api_urls
from app.web.pages.case_pages import case_status_url, normal_class
from app.web.pages.rendering import render
from app.web.runtime import Runtime
from app.web.schemas import StudySummaryOut
from app.web.services.studies import StudySummary, list_studies

router = APIRouter()

WORKLIST_LIMIT = 500


def _as_api_json(summary: StudySummary) -> dict[str, Any]:
    return StudySummaryOut.model_validate(summary, from_attributes=True).model_dump(mode="json")


@router.get("/", include_in_schema=False)
@router.get("/worklist", include_in_schema=False)
def worklist(
    request: Request,
    user: User = Depends(require_user_page),
    db: Session = Depends(get_db),
    runtime: Runtime = Depends(get_runtime),
) -> Response:
    mode = runtime.settings.assistance_mode
    summaries = list_studies(db, user, mode, sort="p_abnormal", limit=WORKLIST_LIMIT)
    normal = normal_class(runtime)
    return render(
        request,
        "worklist.html",
        user,
        active="worklist",
        # The same JSON the API returns, so worklist.js reads one shape for first paint and updates.
        rows=[_as_api_json(s) for s in summaries],
        normal_class=normal,
        api_url=api_urls.studies(WORKLIST_LIMIT),
    )


@router.get("/upload", include_in_schema=False)
def upload(request: Request, user: User = Depends(require_user_page)) -> Response:
    return render(
        request,
        "upload.html",
        user,
        active="upload",
        api_url=api_urls.UPLOAD,
        status_api_url=case_status_url("{id}"),
    )
