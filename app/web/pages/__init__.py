"""HTML pages: thin routes over app.web.services, rendered with app.web.core.templating.

Every unsafe request (POST, PUT, PATCH, DELETE) to any page route must carry a valid CSRF
token: the check is a dependency of this router, so a new form route cannot forget it.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from app.web.core.csrf import CSRFRejected, verify_csrf
from app.web.pages import (
    account_pages,
    admin_pages,
    auth_pages,
    case_pages,
    reader_study_pages,
    worklist_pages,
)

router = APIRouter(dependencies=[Depends(verify_csrf)])
router.include_router(auth_pages.router)
router.include_router(worklist_pages.router)
router.include_router(case_pages.router)
router.include_router(admin_pages.router)
router.include_router(account_pages.router)
router.include_router(reader_study_pages.router)

# Pages that answer a rejected form with their own page instead of the 403 error page.
_ON_CSRF_REJECTED: dict[Callable[..., Response], Callable[[Request, CSRFRejected], Response]] = {
    auth_pages.login_submit: auth_pages.login_form_expired,
}


def csrf_rejected_page(request: Request, rejected: CSRFRejected) -> Response | None:
    """The page's own answer to a rejected form post, or None for the standard error response."""
    answer = _ON_CSRF_REJECTED.get(request.scope.get("endpoint"))  # type: ignore[arg-type]
    return answer(request, rejected) if answer is not None else None
