"""Sessions (cookie), bearer tokens and the FastAPI dependencies that require a user.

Pages use ``require_user_page`` / ``require_admin_page`` (redirect to /login);
the JSON API uses ``require_api_user`` / ``require_api_admin`` (401/403 JSON).
A session cookie is a signed {user id, nonce}; the user is reloaded and must be
active on every request, so deactivating a user ends their sessions at once.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from app.web.core.csrf import CSRF_FIELD, CSRF_HEADER, csrf_token_valid
from app.web.core.models import User
from app.web.deps import get_db, get_runtime
from app.web.errors import Forbidden, ServiceError
from app.web.runtime import Runtime

SESSION_COOKIE = "fetalcns_session"
_SESSION = "session"
_TOKEN = "access-token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


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


def current_user_optional(
    request: Request,
    db: Session = Depends(get_db),
    token: str | None = Depends(oauth2_scheme),
    runtime: Runtime = Depends(get_runtime),
) -> User | None:
    """The logged-in user (bearer token first, then session cookie), or None."""
    if token:
        return token_user(runtime, db, token)
    return session_user(request, db)


class _Authenticated:
    """Who made an API request, and whether by session cookie (which then needs CSRF)."""

    def __init__(self, user: User, by_cookie: bool) -> None:
        self.user = user
        self.by_cookie = by_cookie


def _api_identity(
    request: Request,
    db: Session = Depends(get_db),
    token: str | None = Depends(oauth2_scheme),
    runtime: Runtime = Depends(get_runtime),
) -> _Authenticated:
    if token:
        user = token_user(runtime, db, token)
        if user is None:
            raise NotAuthenticated("your sign-in has expired or is invalid; sign in again")
        return _Authenticated(user, by_cookie=False)
    user = session_user(request, db)
    if user is None:
        raise NotAuthenticated("sign in first")
    return _Authenticated(user, by_cookie=True)


async def require_api_user(request: Request, identity: _Authenticated = Depends(_api_identity)) -> User:
    """JSON API auth: bearer token, or session cookie plus CSRF token on unsafe methods.

    With a cookie, scripts send the token as the X-CSRF-Token header; forms as
    the ``csrf_token`` field.
    """
    if identity.by_cookie and request.method in _UNSAFE:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")
        ):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not csrf_token_valid(request, sent):
            raise Forbidden("the request did not come from this site's pages (missing CSRF token)")
    return identity.user


def require_api_admin(user: User = Depends(require_api_user)) -> User:
    if not user.is_admin:
        raise Forbidden("only an administrator can do this")
    return user


def safe_next_url(next_url: str | None, default: str = "/") -> str:
    """``next_url`` if it is a path on this site, else ``default`` (prevents open redirects)."""
    if next_url and next_url.startswith("/") and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return default


def _next_url(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def require_user_page(request: Request, db: Session = Depends(get_db)) -> User:
    """Page dependency: the logged-in user, else a redirect to /login?next=<this page>."""
    user = session_user(request, db)
    if user is None:
        raise LoginRequired(_next_url(request))
    return user


def require_admin_page(user: User = Depends(require_user_page)) -> User:
    """Page dependency: an admin, else 403 (logged-out users are redirected to /login)."""
    if not user.is_admin:
        raise Forbidden("only an administrator can open this page")
    return user
