"""HTML pages: thin routes over the app.web services, rendered with app.web.core.templating."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.pages import admin_pages, auth_pages, case_pages, worklist_pages

router = APIRouter()
router.include_router(auth_pages.router)
router.include_router(worklist_pages.router)
router.include_router(case_pages.router)
router.include_router(admin_pages.router)
