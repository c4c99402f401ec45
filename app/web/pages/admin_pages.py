"""Administration: user accounts and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from app.web.core.input_guard import RowId
from app.web.core.models import User
from app.web.core.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from app.web.deps import DbSession, PageAdmin
from app.web.errors import ServiceError
from app.web.pages.rendering import render
from app.web.pages.views import format_datetime
from app.web.services.audit import list_audit
from app.web.services.users import create_user, list_users, update_user

router = APIRouter(prefix="/admin")

NOTICES = {
    "created": "User created.",
    "deactivated": "User deactivated. Their sessions and API tokens have ended.",
    "activated": "User reactivated.",
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


@router.get("/audit", include_in_schema=False)
def audit_page(request: Request, admin: PageAdmin, db: DbSession, case: str = "") -> Response:
    case_id = int(case) if case.strip().isdigit() else None
    events = [
        {**e.model_dump(), "at": format_datetime(e.at, seconds=True)}
        for e in reversed(list_audit(db, study_id=case_id, limit=2000))
    ]
    return render(request, "admin/audit.html", admin, active="audit", events=events, case_id=case_id)
