"""FastAPI dependencies, and the typed aliases route signatures use instead of ``= Depends(...)``.

- ``DbSession``, ``RuntimeDep``: a database session per request; the process runtime.
- ``ApiUser``, ``ApiAdmin``: JSON API auth (bearer token, or session cookie plus CSRF token
  on unsafe methods); 401/403 JSON when missing. ``ApiUserNoDb``: the same, for routes that
  do long work without the request's session (it is closed; its connection is back in the pool).
- ``PageUser``, ``PageAdmin``: page auth (session cookie); redirect to /login when signed out.
- ``OptionalUser``: the session's user, or None (the login page).

CSRF on HTML form posts is not here: the pages router checks it for every unsafe method
(app.web.pages, app.web.core.csrf.verify_csrf).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from app.web.core.auth import LoginRequired, NotAuthenticated, session_user, token_user
from app.web.core.csrf import CSRF_FIELD, CSRF_HEADER, UNSAFE_METHODS, csrf_token_valid
from app.web.core.models import User
from app.web.errors import Forbidden
from app.web.runtime import Runtime

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in the
# thread pool, and each such hop waits for a free thread and the GIL; under load a request made
# six of them (docs/deployment.md, "Latency"). Those that query the database stay ``def``.
async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _end_session(session: Session) -> None:
    session.rollback()
    session.close()


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session for this request. Services commit their own changes; anything else is rolled back.

    Making a session touches no connection, and closing one whose changes were committed returns
    nothing to the pool, so neither needs a thread; only an open transaction's ROLLBACK does."""
    session = request.app.state.runtime.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            # Shielded: a client that hangs up must not leave the connection checked out.
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(_end_session, session)
        else:
            session.close()


DbSession = Annotated[Session, Depends(get_db)]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
BearerToken = Annotated[str | None, Depends(oauth2_scheme)]


class _Authenticated:
    """Who made an API request, and whether by session cookie (which then needs CSRF)."""

    def __init__(self, user: User, by_cookie: bool) -> None:
        self.user = user
        self.by_cookie = by_cookie


def _api_identity(request: Request, db: DbSession, token: BearerToken) -> _Authenticated:
    if token:
        user = token_user(db, token)
        if user is None:
            raise NotAuthenticated("your sign-in has expired, was revoked or is invalid; sign in again")
        return _Authenticated(user, by_cookie=False)
    user = session_user(request, db)
    if user is None:
        raise NotAuthenticated("sign in first")
    return _Authenticated(user, by_cookie=True)


async def require_api_user(
    request: Request, identity: Annotated[_Authenticated, Depends(_api_identity)]
) -> User:
    """JSON API auth: bearer token, or session cookie plus CSRF token on unsafe methods.

    With a cookie, scripts send the token as the X-CSRF-Token header; forms as
    the ``csrf_token`` field.
    """
    if identity.by_cookie and request.method in UNSAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not csrf_token_valid(request, sent):
            raise Forbidden("the request did not come from this site's pages (missing CSRF token)")
    return identity.user


ApiUser = Annotated[User, Depends(require_api_user)]


def require_api_user_then_release(user: ApiUser, db: DbSession) -> User:
    """ApiUser for routes that do long work (an upload): the request's session is closed as soon
    as the user is known, so its pooled connection goes back to the pool before the work starts.

    Holding it while the upload took a second connection for its own short transaction let 15
    parallel uploads each hold one of the pool's 15 connections and wait for another: all timed
    out with a 500. The user stays usable (its columns are loaded; closing does not expire them).
    """
    db.close()
    return user


ApiUserNoDb = Annotated[User, Depends(require_api_user_then_release)]


async def require_api_admin(user: ApiUser) -> User:
    if not user.is_admin:
        raise Forbidden("only an administrator can do this")
    return user


ApiAdmin = Annotated[User, Depends(require_api_admin)]


def _next_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def require_user_page(request: Request, db: DbSession) -> User:
    """Page dependency: the logged-in user, else a redirect to /login?next=<this page>."""
    user = session_user(request, db)
    if user is None:
        raise LoginRequired(_next_url(request))
    return user


PageUser = Annotated[User, Depends(require_user_page)]


async def require_admin_page(user: PageUser) -> User:
    """Page dependency: an admin, else 403 (logged-out users are redirected to /login)."""
    if not user.is_admin:
        raise Forbidden("only an administrator can open this page")
    return user


PageAdmin = Annotated[User, Depends(require_admin_page)]


def optional_session_user(request: Request, db: DbSession) -> User | None:
    """The user of the session cookie, or None (never redirects)."""
    return session_user(request, db)


OptionalUser = Annotated[User | None, Depends(optional_session_user)]
