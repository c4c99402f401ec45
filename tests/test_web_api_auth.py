"""Authentication, authorisation and CSRF across the JSON API."""

from __future__ import annotations

import re

import pytest
from fastapi import Depends
from web_pages_support import all_routes
from web_support import PASSWORD, db_url, study_files, web  # noqa: F401

from app.web.core.auth import session_policy
from app.web.core.csrf import CSRF_COOKIE, verify_csrf
from app.web.core.models import User
from app.web.services.credentials import start_session

PUBLIC = {
    "/health",
    "/login",
    "/docs",
    "/openapi.json",
    "/redoc",
    "/api/v1/auth/token",
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_except_public_ones_needs_a_login(web) -> None:  # noqa: F811
    h = web()
    checked = 0
    for path, methods in all_routes(h.app.routes):
        if path in PUBLIC:
            continue
        for method in methods - {"HEAD"}:
            response = h.client.request(method, _concrete(path), follow_redirects=False)
            checked += 1
            if path.startswith(("/api/", "/dicomweb/")):  # DICOMweb signs in like the API
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.json()["detail"]
            else:
                # Pages send browsers to the login form (or reject a forged form post).
                assert response.status_code in (303, 401, 403), (method, path, response.status_code)
                if method == "GET":
                    assert response.headers["location"].startswith("/login?next="), path
    assert checked >= 10
    assert h.client.get("/health").status_code == 200
    assert h.client.get("/docs").status_code == 200


def test_bearer_token_login_and_rejections(web) -> None:  # noqa: F811
    h = web()
    bad = h.client.post("/api/v1/auth/token", data={"username": "rad", "password": "wrong-password"})
    assert bad.status_code == 401 and "wrong username or password" in bad.json()["detail"]
    assert h.client.get("/api/v1/studies", headers=h.auth("rad")).status_code == 200
    forged = {"Authorization": "Bearer " + h.token("rad")[:-2] + "xx"}
    assert h.client.get("/api/v1/studies", headers=forged).status_code == 401
    # Disabling a user ends their access at once, even with a valid token.
    users = h.client.get("/api/v1/users", headers=h.auth("admin")).json()
    rad_id = next(u["id"] for u in users if u["username"] == "rad")
    assert (
        h.client.patch(f"/api/v1/users/{rad_id}", json={"active": False}, headers=h.auth("admin")).status_code
        == 200
    )
    assert h.client.get("/api/v1/studies", headers=h.auth("rad")).status_code == 401


def test_admin_only_endpoints(web) -> None:  # noqa: F811
    h = web()
    study_id = h.upload(study_files(1)).json()["study_id"]
    assert h.client.get(f"/api/v1/studies/{study_id}/audit", headers=h.auth("rad")).status_code == 403
    assert h.client.get("/api/v1/users", headers=h.auth("rad")).status_code == 403
    assert h.client.get(f"/api/v1/studies/{study_id}/audit", headers=h.auth("admin")).status_code == 200
    # The last active admin cannot lock everyone out.
    admin_id = next(
        u["id"] for u in h.client.get("/api/v1/users", headers=h.auth("admin")).json() if u["role"] == "admin"
    )
    refused = h.client.patch(f"/api/v1/users/{admin_id}", json={"active": False}, headers=h.auth("admin"))
    assert refused.status_code == 403 and "last active administrator" in refused.json()["detail"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cookie_sessions_need_a_csrf_token_on_changes(web) -> None:  # noqa: F811
    h = web()

    # A form route guarded like the pages' POST routes.
    def echo() -> dict[str, bool]:
        return {"ok": True}

    h.app.add_api_route("/test-form", echo, methods=["POST"], dependencies=[Depends(verify_csrf)])
    study_id = h.upload(study_files(1)).json()["study_id"]
    h.wait_for(study_id)
    runtime = h.runtime
    rad_id = next(
        u["id"]
        for u in h.client.get("/api/v1/users", headers=h.auth("admin")).json()
        if u["username"] == "rad"
    )
    with runtime.session_factory() as db:
        secret = start_session(db, db.get(User, rad_id), session_policy(runtime))
    h.client.cookies.set("fetalcns_session", secret)
    h.client.cookies.set(CSRF_COOKIE, "nonce-1")
    good = runtime.signer.digest("csrf", "nonce-1")

    # Reading with the cookie works without a token.
    assert h.client.get(f"/api/v1/studies/{study_id}").status_code == 200
    body = {"label": "normal", "confidence": 3}
    missing = h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=body)
    assert missing.status_code == 403 and "CSRF" in missing.json()["detail"]
    wrong = h.client.post(
        f"/api/v1/studies/{study_id}/diagnosis", json=body, headers={"X-CSRF-Token": "forged"}
    )
    assert wrong.status_code == 403
    ok = h.client.post(f"/api/v1/studies/{study_id}/diagnosis", json=body, headers={"X-CSRF-Token": good})
    assert ok.status_code == 201, ok.text

    assert h.client.post("/test-form", data={"csrf_token": "forged"}).status_code == 403
    assert h.client.post("/test-form", data={}).status_code == 403
    assert h.client.post("/test-form", data={"csrf_token": good}).json() == {"ok": True}
