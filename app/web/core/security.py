"""Password hashing (argon2) and HMAC-signed tokens. No framework code here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8
# Longer passwords are refused before hashing (app.web.services.password_policy, and at sign-in).
MAX_PASSWORD_LENGTH = 256


class _Counter:
    """A thread-safe count; the page and API threads of one process share it."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


# Every argon2 verification of this process. Sign-in throttling must refuse an attempt before
# hashing (each costs ~170 ms of CPU); the tests read this to prove it does.
_verifications = _Counter()


def password_verifications() -> int:
    """How many password verifications this process has run so far."""
    return _verifications.value


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    _verifications.add()
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs small JSON payloads with HMAC-SHA256. ``purpose`` separates token kinds.

    A token is ``payload.signature`` (both base64url); the payload carries its
    issue time so that ``loads`` can enforce a maximum age.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(("fetalcns:" + secret_key).encode("utf-8")).digest()

    def _mac(self, purpose: str, body: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}|{body}".encode(), hashlib.sha256).digest())

    def dumps(self, purpose: str, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps({**payload, "iat": int(time.time())}, separators=(",", ":")).encode("utf-8"))
        return f"{body}.{self._mac(purpose, body)}"

    def loads(self, purpose: str, token: str, max_age_s: int) -> dict[str, Any] | None:
        """The payload, or None when the token is malformed, forged or expired."""
        body, _, mac = token.partition(".")
        if not body or not mac or not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("iat"), int):
            return None
        if time.time() - payload["iat"] > max_age_s:
            return None
        return payload

    def digest(self, purpose: str, value: str) -> str:
        """A keyed hash of ``value`` (used for CSRF tokens bound to a nonce)."""
        return self._mac(purpose, value)
