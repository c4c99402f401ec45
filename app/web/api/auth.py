"""POST /api/v1/auth/token: OAuth2 password flow → bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from app.web.api.contract import errors
from app.web.core.auth import NotAuthenticated, issue_access_token
from app.web.deps import DbSession, RuntimeDep
from app.web.schemas import TokenOut
from app.web.services.users import authenticate

router = APIRouter(tags=["auth"])


@router.post(
    "/auth/token",
    response_model=TokenOut,
    summary="Sign in for a bearer token",
    response_description="the token to send as `Authorization: Bearer <token>`",
    responses=errors(400, 401, 413, 422, 429),
)
def login_for_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: DbSession,
    runtime: RuntimeDep,
) -> TokenOut:
    """The OAuth2 password flow: user name and password as a form. Failed sign-ins are
    counted per account and per client address; while either is locked the answer is 429 with
    `Retry-After`, whatever the password."""
    address = request.client.host if request.client else None
    user = authenticate(db, runtime.login_throttle, form.username, form.password, address)
    if user is None:
        raise NotAuthenticated("wrong username or password, or the account is disabled")
    return issue_access_token(runtime, db, user)
