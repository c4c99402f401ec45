"""Administration: user accounts and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response, StreamingResponse

from app.web.core.db import utcnow
from app.web.core.input_guard import RowId
from app.web.core.models import User
from app.web.core.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from app.web.deps import DbSession, PageAdmin, RuntimeDep
from app.web.errors import ServiceError
from app.web.pages.rendering import render
from app.web.pages.views import format_datetime
from app.web.services.audit import AuditFilter, audit_actions, audit_csv, record_event
from app.web.services.audit import audit_page as list_audit_page
from app.web.services.users import create_user, list_users, update_user

router = APIRouter(prefix="/admin")

NOTICES = {
    "created": "User created.",
    "deactivated": "User deactivated. Their sessions and API tokens have ended.",
    "activated": "User reactivated.",
    "role": "Role changed.",
    "password": "Password reset. The user's sessions and API tokens have ended; give them the new "
    "password in person and ask them to change it under their account.",
}


def _users_page(
    request: Request,
    admin: User,
    db: Session,
    *,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    users = [
        {
            **u.model_dump(),
            "created_at": format_datetime(u.created_at),
            "last_login_at": format_datetime(u.last_login_at),
        }
        for u in list_users(db)
    ]
    return render(
        request,
        "admin/users.html",
        admin,
        status_code=status_code,
        active="users",
        users=users,
        error=error,
        notice=notice,
        min_password_length=MIN_PASSWORD_LENGTH,
        max_password_length=MAX_PASSWORD_LENGTH,
    )


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


@router.get("/users", include_in_schema=False)
def users_page(
    request: Request,
    admin: PageAdmin,
    db: DbSession,
    done: str | None = None,
) -> Response:
    return _users_page(request, admin, db, notice=NOTICES.get(done or ""))


@router.post("/users", include_in_schema=False)
def users_create(
    request: Request,
    admin: PageAdmin,
    db: DbSession,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "radiologist",
) -> Response:
    try:
        create_user(db, username, password, role=role, actor=admin)
    except ServiceError as exc:
        db.rollback()
        return _users_page(request, admin, db, error=_sentence(exc.message), status_code=exc.status_code)
    return RedirectResponse("/admin/users?done=created", status_code=303)


def _set_active(request: Request, user_id: int, active: bool, admin: User, db: Session) -> Response:
    try:
        update_user(db, user_id, admin, active=active)
    except ServiceError as exc:
        db.rollback()
        return _users_page(request, admin, db, error=_sentence(exc.message), status_code=exc.status_code)
    return RedirectResponse(f"/admin/users?done={'activated' if active else 'deactivated'}", status_code=303)


@router.post("/users/{user_id}/deactivate", include_in_schema=False)
def users_deactivate(request: Request, user_id: RowId, admin: PageAdmin, db: DbSession) -> Response:
    return _set_active(request, user_id, False, admin, db)


@router.post("/users/{user_id}/activate", include_in_schema=False)
def users_activate(request: Request, user_id: RowId, admin: PageAdmin, db: DbSession) -> Response:
    return _set_active(request, user_id, True, admin, db)


AUDIT_PAGE_SIZE = 100


def _audit_filter(request: Request) -> tuple[AuditFilter, dict[str, str]]:
    """The audit page's filters from the address; values that cannot be right are ignored."""
    params = request.query_params
    case = params.get("case", "").strip().lstrip("#")
    case_id = int(case) if case.isdigit() and len(case) < 10 else None

    def day(name: str) -> date | None:
        try:
            value = date.fromisoformat(params.get(name, "").strip())
        except ValueError:
            return None
        return value if 1900 <= value.year <= 2100 else None

    cleaned = {
        "user": params.get("user", "").strip()[:64],
        "action": params.get("action", "").strip()[:64],
        "case": str(case_id) if case_id is not None else "",
        "date_from": (day("date_from") or "") and str(day("date_from")),
        "date_to": (day("date_to") or "") and str(day("date_to")),
    }
    return (
        AuditFilter(
            username=cleaned["user"] or None,
            action=cleaned["action"] or None,
            study_id=case_id,
            date_from=day("date_from"),
            date_to=day("date_to"),
        ),
        cleaned,
    )


@router.post("/users/{user_id}/role", include_in_schema=False)
def users_role(
    request: Request, user_id: RowId, admin: PageAdmin, db: DbSession, role: Annotated[str, Form()] = ""
) -> Response:
    try:
        update_user(db, user_id, admin, role=role)
    except ServiceError as exc:
        db.rollback()
        return _users_page(request, admin, db, error=_sentence(exc.message), status_code=exc.status_code)
    return RedirectResponse("/admin/users?done=role", status_code=303)


@router.post("/users/{user_id}/password", include_in_schema=False)
def users_password(
    request: Request, user_id: RowId, admin: PageAdmin, db: DbSession, password: Annotated[str, Form()] = ""
) -> Response:
    """An administrator sets a new password for a user who lost theirs (audited)."""
    try:
        update_user(db, user_id, admin, password=password)
    except ServiceError as exc:
        db.rollback()
        return _users_page(request, admin, db, error=_sentence(exc.message), status_code=exc.status_code)
    return RedirectResponse("/admin/users?done=password", status_code=303)


@router.get("/audit", include_in_schema=False)
def audit_page(request: Request, admin: PageAdmin, db: DbSession) -> Response:
    f, cleaned = _audit_filter(request)
    page_text = request.query_params.get("page", "1")
    page = int(page_text) if page_text.isdigit() and 0 < len(page_text) < 7 else 1
    events, total = list_audit_page(db, f, limit=AUDIT_PAGE_SIZE, offset=(page - 1) * AUDIT_PAGE_SIZE)
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    query = {k: v for k, v in cleaned.items() if v}

    def page_url(number: int) -> str:
        return "/admin/audit?" + urlencode({**query, "page": str(number)})

    return render(
        request,
        "admin/audit.html",
        admin,
        active="audit",
        events=[{**e.model_dump(), "at": format_datetime(e.at, seconds=True)} for e in events],
        filters=cleaned,
        case_id=f.study_id,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * AUDIT_PAGE_SIZE + 1 if events else 0,
        last=(page - 1) * AUDIT_PAGE_SIZE + len(events),
        prev_url=page_url(page - 1) if page > 1 else None,
        next_url=page_url(page + 1) if page < pages else None,
        csv_url="/admin/audit.csv" + ("?" + urlencode(query) if query else ""),
        actions=audit_actions(db),
        users=[u.username for u in list_users(db)],
    )


@router.get("/audit.csv", include_in_schema=False)
def audit_export(request: Request, admin: PageAdmin, db: DbSession, runtime: RuntimeDep) -> Response:
    """Every event the filters match as CSV (newest first). The export itself is audited."""
    f, cleaned = _audit_filter(request)
    record_event(db, admin, "audit.export", filters={k: v for k, v in cleaned.items() if v})
    db.commit()
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")

    def rows() -> Iterator[str]:
        # Its own session: the request's may be closed before a long export is streamed.
        with runtime.session_factory() as export_db:
            yield from audit_csv(export_db, f)

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="fetalcns-audit-{stamp}.csv"'},
    )
