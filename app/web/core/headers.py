"""Security and caching headers on every response, set in one place.

- A strict Content-Security-Policy: scripts, styles, images and fetches from this server
  only, and no inline script or style at all (templates keep their code in static/js and
  their looks in static/css; values reach scripts as data- attributes or JSON data blocks).
  An injected ``<script>`` or ``style`` attribute, even one that slipped past escaping,
  does not run. ``frame-ancestors 'none'`` (and X-Frame-Options for old browsers) refuses
  framing, so no other site can overlay the diagnosis form (clickjacking); ``form-action``
  and ``base-uri`` keep a form or a relative link from being pointed elsewhere.
- The API documentation pages (/docs, /redoc; no patient data) get the same policy but
  for what the vendored Swagger UI and ReDoc need: data: images (Swagger UI's stylesheet)
  and, for ReDoc, styles its script injects and its search worker (a blob: URL).
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


def _policy(**overrides: str) -> str:
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self'",
        "connect-src": "'self'",
        "font-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    directives.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CSP = _policy()
# Swagger UI's stylesheet draws its icons as data: images; ReDoc's styled-components add
# <style> elements from script, and its search runs in a worker made from a blob: URL.
# Neither page shows patient data; scripts stay 'self' only.
DOCS_CSP = {
    "/docs": _policy(img_src="'self' data:"),
    "/redoc": _policy(img_src="'self' data:", style_src="'self' 'unsafe-inline'", worker_src="blob:"),
}
FIXED_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
HSTS = "max-age=31536000; includeSubDomains"


def content_security_policy(path: str) -> str:
    return DOCS_CSP.get(path, CSP)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, https_always: bool) -> None:
        self.app = app
        self.https_always = https_always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        static = path.startswith(STATIC_PREFIX)
        https = self.https_always or scope.get("scheme") == "https"
        policy = content_security_policy(path)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = policy
                for name, value in FIXED_HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
                if https:
                    headers["strict-transport-security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_headers)
