"""Every answer carries the security headers; only static assets may be cached."""

from __future__ import annotations

import pytest
from web_support import db_url, study_files, web  # noqa: F401

from app.web.core.headers import FIXED_HEADERS, HSTS

pytestmark = pytest.mark.slow


def _assert_secure(response, cacheable: bool = False) -> None:
    for name, value in FIXED_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    if not cacheable:
        assert response.headers.get("cache-control") == "no-store", response.request.url


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
        h.client.get("/api/v1/studies", headers=auth),
        h.client.get(f"/api/v1/studies/{study_id}", headers=auth),
        h.client.get(image["image_url"], headers=auth),
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


def test_hsts_over_https_or_behind_a_tls_proxy(web) -> None:  # noqa: F811
    h = web(secure_cookies=True)
    assert h.client.get("/login").headers["strict-transport-security"] == HSTS
