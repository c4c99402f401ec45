"""CSRF protection for cookie-authenticated requests (signed double-submit token).

A random nonce lives in the ``fetalcns_csrf`` cookie; the token put in forms
(and sent by scripts as the X-CSRF-Token header) is an HMAC of that nonce, so
another site can neither read nor forge it. Bearer-token API calls need no CSRF.
Signing in and out renews the nonce (``renew_csrf``), so the token changes at sign-in.

Where it is checked: every unsafe request to an HTML page (``verify_csrf``, a dependency of
the whole pages router) and every unsafe cookie-authenticated API call (app.web.deps).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.errors import Forbidden

CSRF_COOKIE = "fetalcns_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_NEW_NONCE = "fetalcns_new_csrf_nonce"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _nonce(request: Request) -> str:
    # A nonce made during this request (first visit, or renewed at sign-in) wins over the cookie.
    nonce = getattr(request.state, _NEW_NONCE, None) or request.cookies.get(CSRF_COOKIE)
    if not nonce:
        nonce = secrets.token_urlsafe(24)
        # CSRFCookieMiddleware sets the cookie on the way out.
        setattr(request.state, _NEW_NONCE, nonce)
    return nonce


def renew_csrf(request: Request) -> None:
    """A new nonce, so a new token, from this response on: called at sign-in and sign-out, so a
    token planted or read before sign-in (session fixation) is refused afterwards."""
    setattr(request.state, _NEW_NONCE, secrets.token_urlsafe(24))


def csrf_token(request: Request) -> str:
    """The token to embed in every form as a hidden ``csrf_token`` field (a template global)."""
    runtime = request.app.state.runtime
    return runtime.signer.digest("csrf", _nonce(request))


def csrf_token_valid(request: Request, token: str | None) -> bool:
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce or not token:
        return False
    return hmac.compare_digest(token, request.app.state.runtime.signer.digest("csrf", nonce))


class CSRFRejected(Forbidden):
    """An unsafe page request without a valid token. Keeps the form's plain fields (never passwords)
    so that a page can show its form again, filled in, instead of an error page."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("the form has expired or did not come from this site; reload the page and try again")
        self.fields = fields


async def verify_csrf(request: Request) -> None:
    """The pages router's dependency: every unsafe request must carry a valid token.

    It is on the router, not on each route, so that a new form route cannot forget it.
    Forms send the ``csrf_token`` field; scripts may send the X-CSRF-Token header.
    """
    if request.method not in UNSAFE_METHODS:
        return
    token = request.headers.get(CSRF_HEADER)
    fields: dict[str, str] = {}
    if token is None:
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str) and "password" not in k}
        token = fields.pop(CSRF_FIELD, None)
    if not csrf_token_valid(request, token):
        raise CSRFRejected(fields)


class CSRFCookieMiddleware:
    """Sets the CSRF nonce cookie when a page generated a new one during the request."""

    def __init__(self, app: ASGIApp, secure_always: bool) -> None:
        self.app = app
        self.secure_always = secure_always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonce = scope.get("state", {}).get(_NEW_NONCE)
                if nonce:
                    secure = self.secure_always or scope.get("scheme") == "https"
                    cookie = f"{CSRF_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Lax"
                    if secure:
                        cookie += "; Secure"
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode("latin-1"))]
            await send(message)

        await self.app(scope, receive, send_with_cookie)
