"""Who is signed in: session cookies (pages) and bearer tokens (JSON API).

Both are server-side credentials (app.web.services.credentials): the cookie and the token carry a
random secret whose hash names a row, so sign-out, a password change and deactivation end them at
once. The user is reloaded on every request and must be active. The FastAPI dependencies that
require a user are in app.web.deps.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request, Response
from sqlalchemy.orm import Session

from app.web.core.csrf import renew_csrf
from app.web.core.models import User
from app.web.errors import ServiceError
from app.web.runtime import Runtime
from app.web.schemas import TokenOut
from app.web.services import credentials

SESSION_COOKIE = "fetalcns_session"
SIGN_IN_TOKEN_NAME = "sign-in"


class NotAuthenticated(ServiceError):
    status_code = 401


class LoginRequired(Exception):
    """Raised by page dependencies; create_app answers with a redirect to /login?next=..."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url

    @property
    def login_url(self) -> str:
        return "/login?next=" + quote(self.next_url, safe="/")


def cookie_secure(request: Request, runtime: Runtime) -> bool:
    return runtime.settings.secure_cookies or request.url.scheme == "https"


def session_policy(runtime: Runtime) -> credentials.SessionPolicy:
    settings = runtime.settings
    return credentials.SessionPolicy(
        idle_s=settings.session_idle_timeout_s, max_age_s=settings.session_max_age_s
    )


def start_session(request: Request, response: Response, db: Session, user: User) -> None:
    """Sign ``user`` in on this browser: a new session row, its secret in the HttpOnly cookie on
    ``response``, and a new CSRF token (one planted before sign-in is worthless after it)."""
    runtime: Runtime = request.app.state.runtime
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        credentials.end_session(db, old)  # never two sessions in one browser
    secret = credentials.start_session(db, user, session_policy(runtime))
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=runtime.settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, runtime),
        path="/",
    )
    renew_csrf(request)


def end_session(request: Request, response: Response, db: Session) -> None:
    """Sign out: deletes the session row and clears the cookie on ``response``; a new CSRF token."""
    runtime: Runtime = request.app.state.runtime
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        credentials.end_session(db, secret)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request, runtime)
    )
    renew_csrf(request)


def issue_access_token(runtime: Runtime, db: Session, user: User) -> TokenOut:
    """A bearer token for the JSON API, valid for settings.token_max_age_s unless revoked."""
    token, secret = credentials.issue_token(db, user, SIGN_IN_TOKEN_NAME, runtime.settings.token_max_age_s)
    return TokenOut(access_token=secret, token_id=token.id, expires_at=token.expires_at)


def session_user(request: Request, db: Session) -> User | None:
    """The user of the session cookie, or None (no cookie, or the session has ended)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    return credentials.session_user(db, secret, session_policy(request.app.state.runtime))


def token_user(db: Session, token: str) -> User | None:
    """The owner of a live bearer token, or None."""
    return credentials.token_user(db, token)


def safe_next_url(next_url: str | None, default: str = "/") -> str:
    """``next_url`` if it is a path on this site, else ``default`` (prevents open redirects)."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return default
