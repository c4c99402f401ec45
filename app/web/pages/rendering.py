"""One way to render a page: the base template's values (CSRF token, banner, user) always present."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import HTMLResponse

from app.web.core.models import User
from app.web.core.templating import banner, class_names, csrf_token, human_label, templates


def class_labels(request: Request) -> dict[str, str]:
    """Class name → display name, in model order."""
    return {name: human_label(name) for name in class_names(request)}


def render(
    request: Request, template: str, user: User | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    values: dict[str, Any] = {
        "user": user,
        "csrf_token": csrf_token(request),
        "banner": banner(request),
        "classes": class_names(request),
        "class_labels": class_labels(request),
        "active": None,
    }
    values.update(context)
    # Cache-Control: no-store comes from app.web.core.headers, like every non-static answer.
    return templates.TemplateResponse(request, template, values, status_code=status_code)
