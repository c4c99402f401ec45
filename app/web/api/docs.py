"""/docs (Swagger UI) and /redoc from assets the app serves itself, with no inline script.

FastAPI's defaults load both from a public CDN, which a hospital's air-gapped network
cannot reach, and start Swagger UI with an inline script, which the Content-Security-Policy
(app.web.core.headers) refuses. The assets are vendored under static/vendor/ (versions in
its README); Swagger UI is started by static/js/swagger-init.js, which reads the OpenAPI
address from a data- attribute. ReDoc starts itself from its ``<redoc spec-url>`` element.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
_VENDOR = "/static/vendor"
_FAVICON = "/static/img/favicon.svg"

router = APIRouter(include_in_schema=False)


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="icon" href="{_FAVICON}" type="image/svg+xml">\n{head}</head>\n'
        f"<body>\n{body}</body>\n</html>\n"
    )


@router.get(DOCS_URL)
def swagger_ui(request: Request) -> HTMLResponse:
    openapi_url = escape(request.app.openapi_url or "")
    return _page(
        f"{request.app.title} — API",
        f'<link rel="stylesheet" href="{_VENDOR}/swagger-ui/swagger-ui.css">\n',
        f'<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>\n'
        f'<script src="{_VENDOR}/swagger-ui/swagger-ui-bundle.js"></script>\n'
        '<script src="/static/js/swagger-init.js"></script>\n',
    )


@router.get(REDOC_URL)
def redoc(request: Request) -> HTMLResponse:
    openapi_url = escape(request.app.openapi_url or "")
    return _page(
        f"{request.app.title} — API reference",
        '<link rel="stylesheet" href="/static/css/redoc-page.css">\n',
        "<noscript>ReDoc needs JavaScript to show the documentation.</noscript>\n"
        f'<redoc spec-url="{openapi_url}"></redoc>\n'
        f'<script src="{_VENDOR}/redoc/redoc.standalone.js"></script>\n',
    )
