"""The JSON API endpoints the pages' scripts call (routes owned by app.web.api)."""

from __future__ import annotations

UPLOAD = "/api/v1/studies"


def studies(limit: int) -> str:
    return f"/api/v1/studies?limit={limit}"
