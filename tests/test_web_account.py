"""A user's own account, on SQLite and PostgreSQL: changing the password (API and page) ends every
session and token of the user; the account page lists the user's API tokens and revokes them."""

from __future__ import annotations

import re
from typing import Any

from web_pages_support import csrf_of
from web_support import PASSWORD, db_url, web  # noqa: F401

from app.web.core.auth import SESSION_COOKIE
from app.web.services.audit import list_audit

NEW_PASSWORD = "amber lantern meadow"


def _reader(h: Any) -> int:
    """A user of this test only: the fixture keeps its own users' passwords between tests."""
    made = h.client.post(
        "/api/v1/users", json={"username": "reader", "password": PASSWORD}, headers=h.auth("admin")
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


def _token(h: Any, password: str = PASSWORD) -> dict[str, str]:
    response = h.client.post("/api/v1/auth/token", data={"username": "reader", "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _sign_in(h: Any, password: str = PASSWORD) -> str:
    h.client.cookies.clear()
    csrf = csrf_of(h.client.get("/login").text)
    form = {"username": "reader", "password": password, "csrf_token": csrf, "next": "/"}
    assert h.client.post("/login", data=form, follow_redirects=False).status_code == 303
    return h.client.cookies[SESSION_COOKIE]


def _use(h: Any, cookie: str) -> None:
    """This browser now holds ``cookie`` as its session (one cookie, whoever set the last one)."""
    h.client.cookies.delete(SESSION_COOKIE)
    h.client.cookies.set(SESSION_COOKIE, cookie)


def _signed_in(h: Any, cookie: str) -> bool:
    _use(h, cookie)
    return h.client.get("/worklist", follow_redirects=False).status_code == 200


def test_changing_the_password_through_the_api_ends_every_session_and_token(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    _reader(h)
    cookie = _sign_in(h)
    h.client.cookies.clear()
    token, other = _token(h), _token(h)

    wrong = h.client.post(
        "/api/v1/account/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers=token,
    )
    assert wrong.status_code == 403 and "current password is wrong" in wrong.json()["detail"]
    weak = h.client.post(
        "/api/v1/account/password",
        json={"current_password": PASSWORD, "new_password": "Reader2025!"},
        headers=token,
    )
    assert weak.status_code == 422 and "user name" in weak.json()["detail"]
    assert h.client.get("/api/v1/studies", headers=other).status_code == 200  # nothing changed yet

    done = h.client.post(
        "/api/v1/account/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=token,
    )
    assert done.status_code == 204, done.text
    for headers in (token, other):
        assert h.client.get("/api/v1/studies", headers=headers).status_code == 401
    assert not _signed_in(h, cookie)
    h.client.cookies.clear()
    assert (
        h.client.post("/api/v1/auth/token", data={"username": "reader", "password": PASSWORD}).status_code
        == 401
    )
    assert h.client.get("/api/v1/studies", headers=_token(h, NEW_PASSWORD)).status_code == 200

    with h.runtime.session_factory() as db:
        changed = list_audit(db, action="user.password_change")
        failed = list_audit(db, action="user.password_change_failed")
    assert [(e.username, e.detail["sessions_ended"], e.detail["tokens_revoked"]) for e in changed] == [
        ("reader", 1, 2)
    ]
    assert [e.username for e in failed] == ["reader"]


def test_the_account_page_revokes_tokens_and_changes_the_password(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    _reader(h)
    elsewhere = _sign_in(h)  # another browser
    h.client.cookies.clear()
    token = _token(h)
    named = h.client.post("/api/v1/tokens", json={"name": "PACS bridge"}, headers=token).json()
    here = _sign_in(h)

    page = h.client.get("/account")
    assert page.status_code == 200
    assert "PACS bridge" in page.text and f'data-token-id="{named["id"]}"' in page.text
    assert named["access_token"] not in page.text
    csrf = csrf_of(page.text)
    revoked = h.client.post(
        f"/account/tokens/{named['id']}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert revoked.status_code == 303
    listed = h.client.get(revoked.headers["location"]).text
    assert "API token revoked." in listed and "PACS bridge" not in listed
    h.client.cookies.delete(SESSION_COOKIE)
    assert (
        h.client.get(
            "/api/v1/studies", headers={"Authorization": "Bearer " + named["access_token"]}
        ).status_code
        == 401
    )
    _use(h, here)

    # Another user's token id is "not found" on this page too.
    admin_token_id = h.client.get("/api/v1/tokens", headers=h.auth("admin")).json()[0]["id"]
    foreign = h.client.post(f"/account/tokens/{admin_token_id}/revoke", data={"csrf_token": csrf})
    assert foreign.status_code == 404
    assert h.client.get("/api/v1/studies", headers=h.auth("admin")).status_code == 200

    weak = h.client.post(
        "/account/password",
        data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": "password"},
    )
    assert weak.status_code == 422 and "common, easily guessed" in weak.text
    changed = h.client.post(
        "/account/password",
        data={"csrf_token": csrf, "current_password": PASSWORD, "new_password": NEW_PASSWORD},
        follow_redirects=False,
    )
    assert changed.status_code == 303 and changed.headers["location"] == "/account?done=password"
    fresh = changed.cookies[SESSION_COOKIE]
    assert fresh != here
    _use(h, fresh)
    assert "Password changed." in h.client.get(changed.headers["location"]).text  # still signed in
    assert not _signed_in(h, here) and not _signed_in(h, elsewhere)
    assert _signed_in(h, fresh)
    assert h.client.get("/api/v1/studies", headers=token).status_code == 401
    assert re.search(r"data-token-id", h.client.get("/account").text) is None
