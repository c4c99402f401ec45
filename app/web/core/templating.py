"""The Jinja2 environment for the HTML pages (app.web.pages).

Use ``templates.TemplateResponse(request, "name.html", {...})``. Globals
available in every template:
- ``banner(request)``: the model card's warning banner (str or None); show it on every page.
- ``csrf_token(request)``: the token for the hidden ``csrf_token`` field of every form.
- ``assistance_mode(request)``: "concurrent" or "second-read".
- ``model_info(request)``: {"name", "version", "provider"} or None when no model is loaded.
- ``class_names(request)``: the model's class names, in model order.
- ``human_label(name)``: a display name for a class
  ("Encephalocele_meningocele" → "Encephalocele / meningocele").
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from app.web.core.csrf import csrf_token
from app.web.core.paths import project_dir

templates = Jinja2Templates(directory=str(project_dir("templates")))


def banner(request: Request) -> str | None:
    return request.app.state.runtime.banner


def assistance_mode(request: Request) -> str:
    return request.app.state.runtime.settings.assistance_mode


def model_info(request: Request) -> dict[str, Any] | None:
    runtime = request.app.state.runtime
    card = runtime.model_card
    if card is None:
        return None
    return {"name": card.name, "version": card.version, "provider": runtime.inference.provider}


def class_names(request: Request) -> tuple[str, ...]:
    return request.app.state.runtime.class_names


def human_label(name: str | None) -> str:
    if not name:
        return ""
    if name == "normal":
        return "Normal"
    return name.replace("_", " / ") if name.count("_") == 1 else name.replace("_", " ")


templates.env.globals.update(
    banner=banner,
    csrf_token=csrf_token,
    assistance_mode=assistance_mode,
    model_info=model_info,
    class_names=class_names,
    human_label=human_label,
)
