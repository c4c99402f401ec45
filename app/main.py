"""The ASGI entry point: ``uvicorn app.main:app`` (``fetalcns serve`` builds its own via create_app).

The app itself is built in app.web.app; this module only exposes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def __getattr__(name: str) -> FastAPI:
    # Built lazily from the environment's settings, so importing this module has no side effects.
    if name == "app":
        from app.web.app import create_app

        return create_app()
    raise AttributeError(name)
