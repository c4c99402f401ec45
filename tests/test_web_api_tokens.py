"""Signed tokens, password hashing and redirect targets: the pieces sessions and bearer tokens rest on."""

from __future__ import annotations

from app.web.core.auth import safe_next_url
from app.web.core.security import Signer, hash_password, verify_password


def test_signed_tokens_reject_tampering_other_purposes_other_keys_and_age() -> None:
    signer = Signer("key-one")
    token = signer.dumps("session", {"uid": 7})
    assert signer.loads("session", token, max_age_s=60)["uid"] == 7
    body, mac = token.split(".")
    assert signer.loads("session", body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"), 60) is None
    assert signer.loads("access-token", token, 60) is None
    assert Signer("key-two").loads("session", token, 60) is None
    assert signer.loads("session", token, max_age_s=-1) is None
    assert signer.loads("session", "garbage", 60) is None and signer.loads("session", ".", 60) is None


def test_passwords_are_argon2_hashed() -> None:
    hashed = hash_password("correct horse")
    assert hashed.startswith("$argon2") and "correct horse" not in hashed
    assert verify_password(hashed, "correct horse") and not verify_password(hashed, "wrong horse")
    assert not verify_password("not-a-hash", "correct horse")


def test_login_redirects_stay_on_this_site() -> None:
    assert safe_next_url("/cases/3?tab=images") == "/cases/3?tab=images"
    for hostile in ("https://evil.example", "//evil.example", "/\\evil.example", "", None):
        assert safe_next_url(hostile) == "/"
