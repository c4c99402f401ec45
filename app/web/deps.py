"""Basic FastAPI dependencies: the process runtime and a database session per request."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from app.web.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_db(request: Request) -> Iterator[Session]:
    """A session for this request. Services commit their own changes; anything else is rolled back."""
    session = request.app.state.runtime.session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()
