"""Server-side sessions and API tokens on SQLite and PostgreSQL: sign-out, a password reset and
deactivation end them; sessions end when idle and when too old; tokens are listed and revoked by
their owner and by admins; the CSRF token changes at sign-in; /health names no path."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from web_pages_support import csrf_of
from web_support import PASSWORD, db_url, web  # noqa: F401

from app.web.core.auth import SESSION_COOKIE
from app.web.core.csrf import CSRF_COOKIE
from app.web.core.db import utcnow
from app.web.core.models import ApiToken, User, UserSession
from app.web.services.audit import list_audit
from app.web.services.credentials import secret_hash


def _sign_in(h: Any, username: str, password: str = PASSWORD) -> str:
    """Signs in through the login form; returns the session cookie's value."""
    token = csrf_of(h.client.get("/login").text)
    response = h.client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return h.client.cookies[SESSION_COOKIE]


def _page_status(h: Any, cookie: str) -> int:
    h.client.cookies.set(SESSION_COOKIE, cookie)
    response = h.client.get("/worklist", follow_redirects=False)
    if response.status_code == 303:
        assert response.headers["location"].startswith("/login?next="), response.headers["location"]
    return response.status_code


def _api_status(h: Any, cookie: str) -> int:
    h.client.cookies.set(SESSION_COOKIE, cookie)
    return h.client.get("/api/v1/studies").status_code


def _user_id(h: Any, username: str) -> int:
    with h.runtime.session_factory() as db:
        return int(db.scalar(select(User.id).where(User.username == username)))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _new_token(h: Any, username: str) -> str:
    response = h.client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _sessions(h: Any) -> list[UserSession]:
    with h.runtime.session_factory() as db:
        return list(db.scalars(select(UserSession)))


def test_sign_out_ends_the_session_on_the_server(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    cookie = _sign_in(h, "rad")
    assert _page_status(h, cookie) == 200 and _api_status(h, cookie) == 200
    # Only a hash of the secret is stored.
    rows = _sessions(h)
    assert [r.secret_hash for r in rows] == [secret_hash(cookie)] and cookie not in rows[0].secret_hash

    csrf = csrf_of(h.client.get("/worklist").text)
    assert h.client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert _sessions(h) == []
    # The browser forgot the cookie; someone who copied it gets nothing.
    assert _page_status(h, cookie) == 303 and _api_status(h, cookie) == 401
    with h.runtime.session_factory() as db:
        assert [e.username for e in list_audit(db, action="auth.logout")] == ["rad"]


def test_a_password_reset_ends_sessions_and_tokens_and_old_ones_stay_dead(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    admin = h.auth("admin")
    # A user of this test only: the fixture keeps its users' passwords from test to test.
    made = h.client.post("/api/v1/users", json={"username": "reader", "password": PASSWORD}, headers=admin)
    assert made.status_code == 201, made.text
    rad_id = made.json()["id"]
    cookie = _sign_in(h, "reader")
    token = _new_token(h, "reader")
    h.client.cookies.clear()  # another browser: signing in here would end reader's session
    admin_cookie = _sign_in(h, "admin")

    new_password = "violet tugboat orbit"
    reset = h.client.patch(f"/api/v1/users/{rad_id}", json={"password": new_password}, headers=admin)
    assert reset.status_code == 200, reset.text
    assert h.client.get("/api/v1/studies", headers=_bearer(token)).status_code == 401
    assert _page_status(h, cookie) == 303 and _api_status(h, cookie) == 401
    # Only reader's credentials ended.
    assert _page_status(h, admin_cookie) == 200
    assert h.client.get("/api/v1/studies", headers=admin).status_code == 200
    with h.runtime.session_factory() as db:
        event = list_audit(db, action="user.update")[-1]
    assert event.detail["password_changed"] is True
    assert event.detail["sessions_ended"] == 1 and event.detail["tokens_revoked"] == 1

    h.client.cookies.clear()
    refused = h.client.post("/api/v1/auth/token", data={"username": "reader", "password": PASSWORD})
    assert refused.status_code == 401
    fresh = h.client.post("/api/v1/auth/token", data={"username": "reader", "password": new_password})
    assert fresh.status_code == 200
    assert h.client.get("/api/v1/studies", headers=_bearer(fresh.json()["access_token"])).status_code == 200


def test_deactivation_then_reactivation_brings_no_old_session_or_token_back(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    cookie = _sign_in(h, "rad")
    token = _new_token(h, "rad")
    admin = h.auth("admin")
    rad_id = _user_id(h, "rad")
    for active in (False, True):
        changed = h.client.patch(f"/api/v1/users/{rad_id}", json={"active": active}, headers=admin)
        assert changed.status_code == 200, changed.text
    assert h.client.get("/api/v1/studies", headers=_bearer(token)).status_code == 401
    assert _page_status(h, cookie) == 303 and _api_status(h, cookie) == 401
    # A new sign-in works again.
    h.client.cookies.clear()
    assert _page_status(h, _sign_in(h, "rad")) == 200


def test_a_session_ends_after_the_idle_timeout_and_activity_keeps_it(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, session_idle_timeout_s=2)
    cookie = _sign_in(h, "rad")
    started = time.monotonic()
    for _ in range(3):  # used every 1.2 s: alive well past the 2 s idle timeout
        time.sleep(1.2)
        assert _page_status(h, cookie) == 200
    assert time.monotonic() - started > 3.5
    time.sleep(2.3)
    assert _page_status(h, cookie) == 303
    assert _sessions(h) == []  # an ended session is deleted


def test_idle_and_absolute_timeouts_follow_the_stored_times(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, session_idle_timeout_s=600, session_max_age_s=3600)
    idle, old = _sign_in(h, "rad"), None
    h.client.cookies.clear()
    old = _sign_in(h, "rad2")
    now = utcnow()
    with h.runtime.session_factory() as db:
        # Idle: last used 601 s ago. Too old: signed in 3601 s ago, although used a second ago.
        db.execute(
            update(UserSession)
            .where(UserSession.secret_hash == secret_hash(idle))
            .values(last_seen_at=now - timedelta(seconds=601))
        )
        db.execute(
            update(UserSession)
            .where(UserSession.secret_hash == secret_hash(old))
            .values(created_at=now - timedelta(seconds=3601), last_seen_at=now - timedelta(seconds=1))
        )
        db.commit()
    assert _api_status(h, idle) == 401 and _page_status(h, idle) == 303
    assert _page_status(h, old) == 303 and _api_status(h, old) == 401
    # Within both limits a session lives on.
    h.client.cookies.clear()
    fresh = _sign_in(h, "rad")
    with h.runtime.session_factory() as db:
        db.execute(
            update(UserSession)
            .where(UserSession.secret_hash == secret_hash(fresh))
            .values(created_at=now - timedelta(seconds=3500), last_seen_at=now - timedelta(seconds=500))
        )
        db.commit()
    assert _page_status(h, fresh) == 200


def test_tokens_are_listed_and_revoked_by_their_owner_and_by_admins(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    rad, rad2, admin = h.auth("rad"), h.auth("rad2"), h.auth("admin")
    created = h.client.post(
        "/api/v1/tokens", json={"name": "PACS bridge", "expires_in_s": 86400}, headers=rad
    )
    assert created.status_code == 201, created.text
    named = created.json()
    assert named["access_token"].startswith("fcns_") and named["name"] == "PACS bridge"
    assert h.client.get("/api/v1/studies", headers=_bearer(named["access_token"])).status_code == 200

    mine = h.client.get("/api/v1/tokens", headers=rad).json()
    assert {t["name"] for t in mine} == {"sign-in", "PACS bridge"}
    assert all("access_token" not in t for t in mine)
    assert next(t for t in mine if t["id"] == named["id"])["last_used_at"] is not None
    with h.runtime.session_factory() as db:
        stored = db.get(ApiToken, named["id"])
        assert stored is not None and stored.secret_hash == secret_hash(named["access_token"])

    # Another radiologist can neither see nor revoke it.
    assert named["id"] not in {t["id"] for t in h.client.get("/api/v1/tokens", headers=rad2).json()}
    assert h.client.delete(f"/api/v1/tokens/{named['id']}", headers=rad2).status_code == 404
    assert h.client.get(f"/api/v1/users/{_user_id(h, 'rad')}/tokens", headers=rad2).status_code == 403

    # The owner revokes the named token; it is refused at once and leaves the list.
    assert h.client.delete(f"/api/v1/tokens/{named['id']}", headers=rad).status_code == 204
    assert h.client.get("/api/v1/studies", headers=_bearer(named["access_token"])).status_code == 401
    assert [t["name"] for t in h.client.get("/api/v1/tokens", headers=rad).json()] == ["sign-in"]

    # An admin lists rad's tokens and revokes the sign-in one.
    listed = h.client.get(f"/api/v1/users/{_user_id(h, 'rad')}/tokens?include_ended=true", headers=admin)
    assert listed.status_code == 200
    by_name = {t["name"]: t for t in listed.json()}
    assert by_name["PACS bridge"]["revoked_at"] is not None and by_name["sign-in"]["revoked_at"] is None
    assert h.client.delete(f"/api/v1/tokens/{by_name['sign-in']['id']}", headers=admin).status_code == 204
    assert h.client.get("/api/v1/studies", headers=rad).status_code == 401

    with h.runtime.session_factory() as db:
        revokes = list_audit(db, action="token.revoke")
        creates = list_audit(db, action="token.create")
    assert [(e.username, e.detail["token_id"]) for e in revokes] == [
        ("rad", named["id"]),
        ("admin", by_name["sign-in"]["id"]),
    ]
    assert [e.detail["name"] for e in creates] == ["PACS bridge"]


def test_expired_tokens_are_refused_and_lifetimes_are_bounded(web) -> None:  # noqa: F811
    h = web(worker_enabled=False, token_max_lifetime_s=3600)
    rad = h.auth("rad")
    too_long = h.client.post("/api/v1/tokens", json={"name": "x", "expires_in_s": 3601}, headers=rad)
    assert too_long.status_code == 422 and "at most 3600 seconds" in too_long.json()["detail"]
    assert h.client.post("/api/v1/tokens", json={"name": ""}, headers=rad).status_code == 422
    token = h.client.post("/api/v1/tokens", json={"name": "short-lived"}, headers=rad).json()
    with h.runtime.session_factory() as db:
        db.execute(
            update(ApiToken)
            .where(ApiToken.id == token["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.commit()
    assert h.client.get("/api/v1/studies", headers=_bearer(token["access_token"])).status_code == 401
    assert token["id"] not in {t["id"] for t in h.client.get("/api/v1/tokens", headers=rad).json()}


def test_the_csrf_token_changes_at_sign_in(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    before = csrf_of(h.client.get("/login").text)
    nonce_before = h.client.cookies[CSRF_COOKIE]
    response = h.client.post(
        "/login",
        data={"username": "rad", "password": PASSWORD, "csrf_token": before, "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert CSRF_COOKIE in response.headers.get("set-cookie", "")
    assert h.client.cookies[CSRF_COOKIE] != nonce_before
    after = csrf_of(h.client.get("/worklist").text)
    assert after != before
    # A token known before sign-in (planted by someone else, say) is worthless after it.
    assert h.client.post("/logout", data={"csrf_token": before}, follow_redirects=False).status_code == 403
    assert h.client.post("/logout", data={"csrf_token": after}, follow_redirects=False).status_code == 303


def test_health_names_the_model_but_no_path(web, tmp_path: Path) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    body = h.client.get("/health").text
    assert h.client.get("/health").json()["model"]["name"]
    assert str(h.settings.model_dir) not in body and str(tmp_path) not in body

    missing = tmp_path / "no-such-model-dir"
    broken = web(worker_enabled=False, model_dir=missing)
    report = broken.client.get("/health")
    assert report.json()["status"] == "degraded" and report.json()["detail"]
    assert str(missing) not in report.text and "no-such-model-dir" not in report.text
