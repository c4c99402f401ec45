"""The JSON API under /api/v1 (OpenAPI at /docs). Routes are thin: they call the service modules."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.api import auth, images, studies, users

router = APIRouter(prefix="/api/v1")
router.include_router(auth.router)
router.include_router(studies.router)
router.include_router(images.router)
router.include_router(users.router)
