"""The worklist (filtered and paged on the server, its filters in the address) and the upload page."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from app.web.core.models import ANALYSIS_STATUSES, User
from app.web.deps import DbSession, PageUser, RuntimeDep
from app.web.pages import api_urls
from app.web.pages.case_pages import case_status_url, normal_class
from app.web.pages.rendering import render
from app.web.runtime import Runtime
from app.web.services.studies import WORKLIST_SORTS, WorklistPage, WorklistQuery, worklist_page
from app.web.services.users import list_users

router = APIRouter()

PAGE_SIZE = 50
# A column's first click sorts this way (the rest ascending).
_DESCENDING_FIRST = {"p_abnormal", "date", "id"}


def _iso(text: str) -> date | None:
    try:
        parsed = date.fromisoformat(text.strip())
    except ValueError:
        return None
    return parsed if 1900 <= parsed.year <= 2100 else None


def worklist_filters(request: Request, runtime: Runtime) -> tuple[WorklistQuery, int, dict[str, str]]:
    """The worklist's filters, order and page from the address. Values a person could have typed
    wrongly (a bookmark from an older version, a hand-edited address) are ignored, not refused:
    the worklist still opens. Also returns the cleaned values, which the page puts back into the form."""
    params = request.query_params
    classes = set(runtime.class_names)
    status = params.get("status", "")
    verdict = params.get("verdict", "")
    reviewed = params.get("reviewed", "")
    sort = params.get("sort", "p_abnormal")
    sort = sort if sort in WORKLIST_SORTS else "p_abnormal"
    direction = params.get("dir", "")
    direction = (
        direction if direction in ("asc", "desc") else ("desc" if sort in _DESCENDING_FIRST else "asc")
    )
    min_p_text = params.get("min_p", "").strip()
    try:
        min_p = float(min_p_text) if min_p_text else None
    except ValueError:
        min_p = None
    if min_p is not None and not 0 <= min_p <= 100:
        min_p = None
    assigned = params.get("assigned", "")
    assigned = assigned if assigned in ("me", "none") or assigned.isdigit() else ""
    page_text = params.get("page", "1")
    page = int(page_text) if page_text.isdigit() and 0 < len(page_text) < 7 else 1
    date_from = _iso(params.get("date_from", ""))
    date_to = _iso(params.get("date_to", ""))
    cleaned = {
        "q": params.get("q", "").strip()[:200],
        "status": status if status in ANALYSIS_STATUSES else "",
        "verdict": verdict
        if verdict in ("abnormal", "normal", "indeterminate") or verdict in classes
        else "",
        "reviewed": reviewed if reviewed in ("yes", "no") else "",
        "min_p": "" if min_p is None else min_p_text,
        "date_from": date_from.isoformat() if date_from else "",
        "date_to": date_to.isoformat() if date_to else "",
        "assigned": assigned,
        "sort": sort,
        "dir": direction,
    }
    query = WorklistQuery(
        q=cleaned["q"],
        status=cleaned["status"] or None,
        verdict=cleaned["verdict"] or None,
        review={"yes": "reviewed", "no": "unreviewed"}.get(cleaned["reviewed"]),  # type: ignore[arg-type]
        date_from=date_from,
        date_to=date_to,
        min_p=None if min_p is None else min_p / 100,
        assigned=assigned or None,
        sort=sort,  # type: ignore[arg-type]
        descending=direction == "desc",
        normal_label=normal_class(runtime),
    )
    return query, max(page, 1), cleaned


def _page_json(result: WorklistPage, page: int) -> dict[str, Any]:
    return {
        "items": [s.model_dump(mode="json") for s in result.items],
        "total": result.total,
        "page": page,
        "page_size": PAGE_SIZE,
        "pages": max(1, -(-result.total // PAGE_SIZE)),
        "latest_id": result.latest_id,
    }


def _load(
    request: Request, user: User, db: DbSession, runtime: Runtime
) -> tuple[dict[str, Any], dict[str, str]]:
    query, page, cleaned = worklist_filters(request, runtime)
    mode = runtime.settings.assistance_mode
    result = worklist_page(db, user, mode, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-result.total // PAGE_SIZE))
    if page > pages and result.total:
        # A bookmark past the last page (cases were signed off since): show the last one.
        page = pages
        result = worklist_page(db, user, mode, query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return _page_json(result, page), cleaned


@router.get("/", include_in_schema=False)
@router.get("/worklist", include_in_schema=False)
def worklist(request: Request, user: PageUser, db: DbSession, runtime: RuntimeDep) -> Response:
    data, cleaned = _load(request, user, db, runtime)
    readers = [u for u in list_users(db) if u.active]
    page = data["page"]

    def page_url(number: int) -> str:
        return "/?" + urlencode({**{k: v for k, v in cleaned.items() if v}, "page": str(number)})

    return render(
        request,
        "worklist.html",
        user,
        active="worklist",
        # The same JSON as the live feed, so worklist.js reads one shape for first paint and updates.
        data=data,
        filters=cleaned,
        readers=readers,
        normal_class=normal_class(runtime),
        second_read=runtime.settings.assistance_mode == "second-read",
        prev_url=page_url(page - 1) if page > 1 else None,
        next_url=page_url(page + 1) if page < data["pages"] else None,
        feed_url=api_urls.WORKLIST_FEED,
    )


@router.get("/worklist/data", include_in_schema=False)
def worklist_data(request: Request, user: PageUser, db: DbSession, runtime: RuntimeDep) -> Response:
    """The worklist page's live feed: the page the address names, the true total and the newest
    case id (new cases show up without a reload). Not audited, like the list itself."""
    data, _ = _load(request, user, db, runtime)
    return JSONResponse(data)


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
