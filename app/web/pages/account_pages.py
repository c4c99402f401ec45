"""The signed-in user's account page: own API tokens (list, revoke) and a password change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from app.web.core.auth import start_session
from app.web.core.input_guard import RowId
from app.web.core.models import User
from app.web.core.security import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from app.web.deps import DbSession, PageUser, RuntimeDep
from app.web.errors import ServiceError
from app.web.pages.rendering import render
from app.web.pages.views import format_datetime
from app.web.services.credentials import list_tokens, revoke_token
from app.web.services.users import change_own_password

router = APIRouter(prefix="/account")

NOTICES = {
    "password": "Password changed. Every other session and all your API tokens have ended.",
    "revoked": "API token revoked.",
}


def _account_page(
    request: Request,
    user: User,
    db: Session,
    *,
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    tokens = [
        {
            **t.model_dump(),
            "created_at": format_datetime(t.created_at),
            "last_used_at": format_datetime(t.last_used_at),
            "expires_at": format_datetime(t.expires_at),
        }
        for t in list_tokens(db, user.id)
    ]
    return render(
        request,
        "account.html",
        user,
        status_code=status_code,
        active="account",
        tokens=tokens,
        error=error,
        notice=notice,
        min_password_length=MIN_PASSWORD_LENGTH,
        max_password_length=MAX_PASSWORD_LENGTH,
    )


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


@router.get("", include_in_schema=False)
def account_page(request: Request, user: PageUser, db: DbSession, done: str | None = None) -> Response:
    return _account_page(request, user, db, notice=NOTICES.get(done or ""))


@router.post("/password", include_in_schema=False)
def account_password(
    request: Request,
    user: PageUser,
    db: DbSession,
    runtime: RuntimeDep,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
) -> Response:
    address = request.client.host if request.client else None
    try:
        change_own_password(db, runtime.login_throttle, user, current_password, new_password, address)
    except ServiceError as exc:
        db.rollback()
        page = _account_page(request, user, db, error=_sentence(exc.message), status_code=exc.status_code)
        retry_after = getattr(exc, "retry_after_s", None)
        if retry_after is not None:
            page.headers["Retry-After"] = str(retry_after)
        return page
    # Every session ended, this one too; this browser, which knew the old password, gets a new one.
    response = RedirectResponse("/account?done=password", status_code=303)
    start_session(request, response, db, user)
    return response


@router.post("/tokens/{token_id}/revoke", include_in_schema=False)
def account_revoke_token(request: Request, token_id: RowId, user: PageUser, db: DbSession) -> Response:
    try:
        revoke_token(db, token_id, user)
    except ServiceError as exc:
        db.rollback()
        return _account_page(request, user, db, error=_sentence(exc.message), status_code=exc.status_code)
    return RedirectResponse("/account?done=revoked", status_code=303)
