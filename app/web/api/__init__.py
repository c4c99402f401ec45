"""The JSON API: /health, and /api/v1 (OpenAPI at /docs). Routes are thin: they call app.web.services."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.api import (
    account,
    auth,
    dicomweb,
    health,
    images,
    measurements,
    metrics,
    reader_studies,
    studies,
    tokens,
    users,
)

_v1 = APIRouter(prefix="/api/v1")
_v1.include_router(auth.router)
_v1.include_router(studies.router)
_v1.include_router(images.router)
_v1.include_router(measurements.router)
_v1.include_router(users.router)
_v1.include_router(tokens.router)
_v1.include_router(account.router)
_v1.include_router(reader_studies.router)

router = APIRouter()
router.include_router(health.router)
router.include_router(metrics.router)
router.include_router(_v1)
router.include_router(dicomweb.router)
