"""Security and caching headers on every response, set in one place.

- Framing is refused (``frame-ancestors 'none'`` and X-Frame-Options for old browsers), so no
  other site can overlay the diagnosis form (clickjacking).
- ``nosniff``: a stored image or JSON answer is never run as a script.
- ``Referrer-Policy: no-referrer``: a case URL never leaks to another site.
- ``Cache-Control: no-store`` on everything but the static assets: pages, API answers and
  images carry patient data, which must not stay in a shared or browser cache.
- HSTS when the request came over HTTPS (or cookies are marked Secure: a TLS proxy).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_PREFIX = "/static/"
FIXED_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
HSTS = "max-age=31536000; includeSubDomains"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, https_always: bool) -> None:
        self.app = app
        self.https_always = https_always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(STATIC_PREFIX)
        https = self.https_always or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in FIXED_HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
                if https:
                    headers["strict-transport-security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_headers)
