"""Who is signed in: session cookies (pages) and bearer tokens (JSON API).

A session cookie is a signed {user id, nonce}; the user is reloaded and must be
active on every request, so deactivating a user ends their sessions at once.
The FastAPI dependencies that require a user are in app.web.deps.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import Request, Response
from sqlalchemy.orm import Session

from app.web.core.models import User
from app.web.errors import ServiceError
from app.web.runtime import Runtime

SESSION_COOKIE = "fetalcns_session"
_SESSION = "session"
_TOKEN = "access-token"


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


def start_session(request: Request, response: Response, user: User) -> None:
    """Log ``user`` in on this browser: sets the signed HttpOnly session cookie on ``response``."""
    runtime: Runtime = request.app.state.runtime
    value = runtime.signer.dumps(_SESSION, {"uid": user.id, "n": secrets.token_urlsafe(12)})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=runtime.settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, runtime),
        path="/",
    )


def end_session(request: Request, response: Response) -> None:
    """Log out: clears the session cookie on ``response``."""
    runtime: Runtime = request.app.state.runtime
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=cookie_secure(request, runtime)
    )


def issue_access_token(runtime: Runtime, user: User) -> str:
    """A bearer token for the JSON API, valid for settings.token_max_age_s."""
    return runtime.signer.dumps(_TOKEN, {"uid": user.id})


def _active_user(db: Session, user_id: object) -> User | None:
    if not isinstance(user_id, int):
        return None
    user = db.get(User, user_id)
    return user if user is not None and user.active else None


def session_user(request: Request, db: Session) -> User | None:
    """The user of the session cookie, or None."""
    runtime: Runtime = request.app.state.runtime
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    payload = runtime.signer.loads(_SESSION, cookie, runtime.settings.session_max_age_s)
    return _active_user(db, payload.get("uid")) if payload else None


def token_user(runtime: Runtime, db: Session, token: str) -> User | None:
    payload = runtime.signer.loads(_TOKEN, token, runtime.settings.token_max_age_s)
    return _active_user(db, payload.get("uid")) if payload else None


def safe_next_url(next_url: str | None, default: str = "/") -> str:
    """``next_url`` if it is a path on this site, else ``default`` (prevents open redirects)."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return default
