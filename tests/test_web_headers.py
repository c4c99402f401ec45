"""Every answer carries the security headers; only static assets may be cached.

The Content-Security-Policy allows no inline script or style; a static check of templates/
keeps them free of what it would refuse, and tests/test_web_browser_csp.py checks the pages
in Chromium.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from web_pages_support import all_routes, app_client, page_settings, sign_in, upload_study
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.headers import CSP, DOCS_CSP, FIXED_HEADERS, HSTS

pytestmark = pytest.mark.slow
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _assert_secure(response, cacheable: bool = False) -> None:
    for name, value in FIXED_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    path = response.request.url.path
    assert response.headers.get("content-security-policy") == DOCS_CSP.get(path, CSP), path
    if not cacheable:
        assert response.headers.get("cache-control") == "no-store", response.request.url


def test_the_policy_allows_nothing_inline_and_no_other_host() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CSP and "*" not in CSP
    for policy in DOCS_CSP.values():
        assert "script-src 'self';" in policy and "'unsafe-eval'" not in policy
        assert "frame-ancestors 'none'" in policy


def test_templates_hold_no_inline_script_style_or_handler() -> None:
    """What the policy would refuse: style attributes and blocks, inline handlers, inline scripts
    (JSON data blocks, which never run, are fine)."""
    found = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text(encoding="utf-8")
        for pattern in (
            r"\sstyle\s*=",
            r"<style",
            r"\son[a-z]+\s*=",
            r"javascript:",
            r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")",
        ):
            found += [f"{template.name}: {m.group()!r}" for m in re.finditer(pattern, text, re.IGNORECASE)]
    assert found == []


def test_pages_api_images_and_errors_carry_the_headers(web) -> None:  # noqa: F811
    h = web()
    study_id = h.upload(study_files(1)).json()["study_id"]
    study = h.wait_for(study_id)
    image = study["images"][0]
    auth = h.auth()
    answers = [
        h.client.get("/login"),
        h.client.get("/health"),
        h.client.get("/docs"),
        h.client.get("/redoc"),
        h.client.get("/api/v1/studies", headers=auth),
        h.client.get(f"/api/v1/studies/{study_id}", headers=auth),
        h.client.get(image["image_url"], headers=auth),
        h.client.get(image["thumbnail_url"], headers=auth),
        h.client.get(image["heatmap_url"], headers=auth),
        h.client.get("/api/v1/studies/999999", headers=auth),  # 404
        h.client.get("/api/v1/studies"),  # 401
        h.client.get("/", follow_redirects=False),  # redirect to the login page
    ]
    assert [a.status_code for a in answers][-3:] == [404, 401, 303]
    for answer in answers:
        _assert_secure(answer)
        assert "strict-transport-security" not in answer.headers  # plain http here
    static = h.client.get("/static/css/app.css")
    assert static.status_code == 200
    _assert_secure(static, cacheable=True)
    assert static.headers.get("cache-control") != "no-store"


def test_every_get_route_answers_no_store(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Walks every GET route of the app, signed in as an administrator, with real ids: each
    answer (pages, JSON, images) that may carry patient data is kept out of every cache."""
    with app_client(page_settings(tmp_path / "var", tiny_model_dir)) as client:
        csrf = sign_in(client, "admin")
        study_id = upload_study(client, csrf)
        deadline = time.monotonic() + 60
        # Analysed, so that every route (heatmaps, the PDF report) has something to answer.
        while (study := client.get(f"/api/v1/studies/{study_id}").json())["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # A reader study with the administrator as its reader, so its pages and API have a read;
        # on a case of its own, because a reader's unread cases stay closed outside the reading page.
        study_read_id = upload_study(client, csrf, uid="1.2.826.0.1.3680043.8.498.77", first_seed=40)
        while client.get(f"/api/v1/studies/{study_read_id}").json()["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        reader_study = client.post(
            "/api/v1/reader-studies",
            json={
                "name": "headers",
                "study_ids": [study_read_id],
                "readers": ["admin"],
                "modes": ["unassisted"],
                "design": "sequential",
                "washout_days": 0,
                "reference": {str(study_read_id): "normal"},
            },
            headers={"X-CSRF-Token": csrf},
        )
        assert reader_study.status_code == 201, reader_study.text
        ids = {
            "study_id": study_id,
            "case_id": study_id,
            "image_id": study["images"][0]["id"],
            "user_id": client.get("/api/v1/users").json()[0]["id"],
            "reader_study_id": reader_study.json()["id"],
        }
        checked = []
        for path, methods in all_routes(client.app.routes):  # type: ignore[attr-defined]
            if "GET" not in methods or path.startswith("/dicomweb/"):
                continue  # DICOMweb paths take UIDs, not ids: tests/test_dicomweb.py checks its answers
            url = re.sub(r"\{([^}]+)\}", lambda m: str(ids[m.group(1)]), path)
            response = client.get(url)
            # /login sends a signed-in user on to the worklist (303); the rest answer 200, but
            # /metrics, which hides from clients not on this host (TestClient's "testclient" is
            # none; tests/test_web_metrics.py reads it from 127.0.0.1): its 404 is checked too.
            expected = (404,) if path == "/metrics" else (200, 303)
            assert response.status_code in expected, (url, response.status_code)
            _assert_secure(response)
            checked.append(path)
        assert len(checked) >= 15, checked
        assert {"/api/v1/images/{image_id}/original", "/cases/{case_id}", "/api/v1/studies"} <= set(checked)
        # Sign-in answers carry the bearer token: not cacheable either.
        token = client.post("/api/v1/auth/token", data={"username": "admin", "password": "wrong"})
        assert token.status_code == 401
        _assert_secure(token)


def test_hsts_over_https_or_behind_a_tls_proxy(web) -> None:  # noqa: F811
    h = web(secure_cookies=True)
    assert h.client.get("/login").headers["strict-transport-security"] == HSTS
