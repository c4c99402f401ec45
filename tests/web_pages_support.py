"""Helpers for the page tests: a migrated app with users, sign-in, CSRF tokens and a hand-made study."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from ingest_support import dicom_bytes, make_us_dataset, phantom

from app.web.app import create_app
from app.web.core.migrations import upgrade_database
from app.web.services.analysis_worker import AnalysisWorker
from app.web.services.users import create_user
from app.web.settings import Settings

PASSWORD = "correct horse battery"
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def page_settings(var_dir: Path, model_dir: Path, assistance_mode: str = "concurrent") -> Settings:
    # Every path explicit: a field the settings do not know would be silently ignored
    # and the test would write into the developer's own database.
    return Settings(
        data_dir=var_dir,
        database_url=f"sqlite:///{(var_dir / 'fetalcns.db').as_posix()}",
        storage_dir=var_dir / "storage",
        model_dir=model_dir,
        secret_key="test-secret-key",
        assistance_mode=assistance_mode,  # type: ignore[arg-type]
        worker_enabled=False,
        inference_threads=1,
    )


@contextmanager
def app_client(settings: Settings) -> Iterator[TestClient]:
    """A TestClient on a freshly migrated database with users 'admin' and 'rad' (password PASSWORD)."""
    upgrade_database(settings.resolved_database_url)
    app = create_app(settings)
    with TestClient(app, follow_redirects=False) as client:
        runtime = app.state.runtime
        with runtime.session_factory() as db:
            create_user(db, "admin", PASSWORD, role="admin")
            create_user(db, "rad", PASSWORD, role="radiologist")
        yield client


def csrf_of(html: str) -> str:
    match = _CSRF_META.search(html)
    assert match, "page has no CSRF meta tag"
    return match.group(1)


def sign_in(client: TestClient, username: str) -> str:
    """Sign in through the login form; returns a CSRF token for later posts."""
    token = csrf_of(client.get("/login").text)
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/"}
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/").text)


def upload_study(
    client: TestClient,
    csrf: str,
    n_images: int = 2,
    patient_name: str = "Doe^Jane",
    uid: str = "1.2.826.0.1.3680043.8.498.1",
    first_seed: int = 0,
) -> int:
    """Upload one DICOM study (through the API, as the upload page does) and analyse it now."""
    # One study: identical study UID across the files.
    files = [
        (
            "files",
            (
                f"img{i}.dcm",
                dicom_bytes(
                    make_us_dataset(
                        phantom(seed=first_seed + i),
                        study_uid=uid,
                        patient_name=patient_name,
                        StudyDate="20260314",
                    )
                ),
                "application/dicom",
            ),
        )
        for i in range(n_images)
    ]
    response = client.post("/api/v1/studies", files=files, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 202, response.text
    study_id = int(response.json()["study_id"])
    AnalysisWorker(client.app.state.runtime).run_pending()  # type: ignore[attr-defined]
    return study_id


def all_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, looking inside included routers."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI >= 0.16x keeps included routers nested
            context_prefix = getattr(getattr(route, "include_context", None), "prefix", "") or ""
            yield from all_routes(route.original_router.routes, prefix + context_prefix)
        elif isinstance(route, APIRoute):
            yield prefix + route.path, set(route.methods)
