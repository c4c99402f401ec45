"""The password policy: 8-256 characters, not a guessable password, not the user name; applied on
create and reset (API and admin page), with 422 before anything is hashed or changed."""

from __future__ import annotations

import pytest
from web_pages_support import csrf_of
from web_support import PASSWORD, db_url, web  # noqa: F401

from app.web.core.security import password_verifications
from app.web.errors import InvalidInput
from app.web.services.password_policy import check_password, common_passwords

GUESSABLE = ["password", "Password1!", "P@ssw0rd", "qwertyuiop", "12345678", "Summer2024!", "trustno1!"]
GUESSABLE += [
    "iloveyou",
    "Dragon123",
    "letmein!!",
    "ultrasound1",
    "Radiology2025",
    "1q2w3e4r5t",
    "pass word 1",
]


def test_the_shipped_list_is_loaded_and_sane() -> None:
    words = common_passwords()
    assert len(words) >= 1500
    assert all(w == w.lower() and len(w) >= 3 and not w.startswith("#") for w in words)
    for phrase in ("correct-horse-battery", "correct horse battery", "violet tugboat orbit"):
        check_password(phrase)  # passphrases of ordinary words pass


@pytest.mark.parametrize("password", GUESSABLE)
def test_guessable_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidInput, match="common, easily guessed"):
        check_password(password, "someone")


def test_length_and_user_name_rules() -> None:
    with pytest.raises(InvalidInput, match="at least 8 characters"):
        check_password("x7#kQ2!")
    check_password("x7#kQ2!z" * 32)  # 256 characters: the most allowed
    with pytest.raises(InvalidInput, match="at most 256 characters"):
        check_password("x7#kQ2!z" * 32 + "a")
    for like_name in ("dr.house", "DR.HOUSE2024", "!dr.house!"):
        with pytest.raises(InvalidInput, match="user name"):
            check_password(like_name, "dr.house")


def test_the_api_refuses_weak_passwords_with_422_and_changes_nothing(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    admin, rad = h.auth("admin"), h.auth("rad")
    before = h.counts()
    for password, reason in (
        ("Password1!", "common, easily guessed"),
        ("short1!", "at least 8"),
        ("k" * 257, "at most 256"),
        ("newreader1", "user name"),
    ):
        made = h.client.post(
            "/api/v1/users", json={"username": "newreader", "password": password}, headers=admin
        )
        assert made.status_code == 422 and reason in made.json()["detail"], (password, made.text)
    rad_id = next(
        u["id"] for u in h.client.get("/api/v1/users", headers=admin).json() if u["username"] == "rad"
    )
    reset = h.client.patch(f"/api/v1/users/{rad_id}", json={"password": "qwerty123"}, headers=admin)
    assert reset.status_code == 422 and "common, easily guessed" in reset.json()["detail"]
    # Nothing changed: no user, no audit event, rad's token and password still work.
    assert h.counts() == before
    assert h.client.get("/api/v1/studies", headers=rad).status_code == 200
    ok = h.client.post("/api/v1/auth/token", data={"username": "rad", "password": PASSWORD})
    assert ok.status_code == 200


def test_an_overlong_password_at_sign_in_is_refused_before_hashing(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    hashed = password_verifications()
    huge = "a" * 100_000
    token = h.client.post("/api/v1/auth/token", data={"username": "rad", "password": huge})
    assert token.status_code == 422 and "at most 256 characters" in token.json()["detail"]
    csrf = csrf_of(h.client.get("/login").text)
    page = h.client.post("/login", data={"username": "rad", "password": huge, "csrf_token": csrf})
    assert page.status_code == 422 and "at most 256 characters" in page.text
    assert password_verifications() == hashed


def test_the_admin_page_shows_why_a_password_is_refused(web) -> None:  # noqa: F811
    h = web(worker_enabled=False)
    csrf = csrf_of(h.client.get("/login").text)
    signed_in = h.client.post(
        "/login",
        data={"username": "admin", "password": PASSWORD, "csrf_token": csrf, "next": "/"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    csrf = csrf_of(h.client.get("/admin/users").text)
    refused = h.client.post(
        "/admin/users",
        data={"csrf_token": csrf, "username": "newreader", "password": "Welcome123!", "role": "radiologist"},
    )
    assert refused.status_code == 422 and "common, easily guessed" in refused.text
    assert 'data-username="newreader"' not in refused.text
