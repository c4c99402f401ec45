"""POST /api/v1/auth/token: OAuth2 password flow → bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from app.web.core.auth import NotAuthenticated, issue_access_token
from app.web.deps import DbSession, RuntimeDep
from app.web.schemas import TokenOut
from app.web.services.users import authenticate

router = APIRouter(tags=["auth"])


@router.post("/auth/token", response_model=TokenOut)
def login_for_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: DbSession,
    runtime: RuntimeDep,
) -> TokenOut:
    """A bearer token; 429 with Retry-After while the account or the client address is locked."""
    address = request.client.host if request.client else None
    user = authenticate(db, runtime.login_throttle, form.username, form.password, address)
    if user is None:
        raise NotAuthenticated("wrong username or password, or the account is disabled")
    return issue_access_token(runtime, db, user)
