"""Sign-in throttling on SQLite and PostgreSQL: per account and per client address, exponential
backoff, 429 + Retry-After before any password hash, on the token endpoint and the login page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from web_pages_support import csrf_of
from web_support import PASSWORD, db_url, web  # noqa: F401

from app.web.core.security import password_verifications
from app.web.services.login_throttle import ThrottlePolicy, wait_text

LIMITS = {
    "login_max_failures_per_account": 3,
    "login_max_failures_per_address": 6,
    "login_backoff_base_s": 1.0,
    "login_backoff_max_s": 8.0,
}


class Clock:
    """A clock the test moves by hand, handed to the app's throttle (its ``clock`` parameter)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _harness(web: Any, **overrides: Any) -> tuple[Any, Clock]:  # noqa: F811
    harness = web(worker_enabled=False, **{**LIMITS, **overrides})
    clock = Clock()
    harness.runtime.login_throttle.clock = clock
    return harness, clock


def _token(harness: Any, username: str, password: str) -> Any:
    return harness.client.post("/api/v1/auth/token", data={"username": username, "password": password})


def test_backoff_doubles_caps_and_reads_plainly() -> None:
    policy = ThrottlePolicy(account_limit=5, address_limit=20, base_s=1.0, max_s=900.0)
    assert [policy.lock_s("account", n) for n in (4, 5, 6, 10)] == [None, 1.0, 2.0, 32.0]
    assert policy.lock_s("account", 20) == 900.0 and policy.lock_s("account", 5000) == 900.0
    assert policy.lock_s("address", 19) is None and policy.lock_s("address", 20) == 1.0
    assert [wait_text(s) for s in (1, 32, 119, 120, 900)] == [
        "1 second",
        "32 seconds",
        "119 seconds",
        "2 minutes",
        "15 minutes",
    ]


def test_account_locks_with_backoff_refuses_before_hashing_and_success_resets(web: Any) -> None:  # noqa: F811
    harness, clock = _harness(web, login_max_failures_per_address=100)
    for _ in range(3):
        assert _token(harness, "rad", "wrong-password").status_code == 401
    hashed = password_verifications()
    refused = _token(harness, "Rad", PASSWORD)  # the right password, and another spelling
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["detail"] == "too many failed sign-ins for this account; try again in 1 second"
    assert password_verifications() == hashed, "a refused attempt must not hash the password"
    # Another account from the same address is not affected.
    assert _token(harness, "rad2", PASSWORD).status_code == 200

    clock.advance(1.1)
    assert _token(harness, "rad", "wrong-password").status_code == 401  # 4th failure: 2 s
    refused = _token(harness, "rad", PASSWORD)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    clock.advance(2.1)
    assert _token(harness, "rad", PASSWORD).status_code == 200
    # The success cleared the account's count: two more failures lock nothing.
    for _ in range(2):
        assert _token(harness, "rad", "wrong-password").status_code == 401
    assert _token(harness, "rad", PASSWORD).status_code == 200


def test_the_backoff_is_capped_and_failures_leave_the_window(web: Any) -> None:  # noqa: F811
    harness, clock = _harness(web, login_failure_window_s=60, login_max_failures_per_address=100)
    for _ in range(3):
        assert _token(harness, "rad", "wrong-password").status_code == 401
    waits = []
    for _ in range(5):
        waits.append(int(_token(harness, "rad", "wrong-password").headers["Retry-After"]))
        clock.advance(waits[-1] + 0.1)
        assert _token(harness, "rad", "wrong-password").status_code == 401
    assert waits == [1, 2, 4, 8, 8]
    # A minute without failures (the window): the count starts again, two failures lock nothing.
    clock.advance(61)
    for _ in range(2):
        assert _token(harness, "rad", "wrong-password").status_code == 401
    assert _token(harness, "rad", PASSWORD).status_code == 200


def test_one_address_is_limited_across_user_names(web: Any) -> None:  # noqa: F811
    harness, clock = _harness(web, login_max_failures_per_account=100)
    names = ["rad", "rad2", "admin", "nobody", "someone", "rad"]
    for name in names:
        assert _token(harness, name, "wrong-password").status_code == 401
    hashed = password_verifications()
    refused = _token(harness, "rad2", PASSWORD)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "from this computer's address" in refused.json()["detail"]
    assert password_verifications() == hashed
    clock.advance(1.1)
    assert _token(harness, "rad2", PASSWORD).status_code == 200
    # A success clears its account, not the address: the next failure locks again (2 s).
    assert _token(harness, "rad", "wrong-password").status_code == 401
    assert _token(harness, "rad", PASSWORD).headers["Retry-After"] == "2"


def test_every_process_sees_the_same_locks(web: Any) -> None:  # noqa: F811
    first, clock = _harness(web)
    second, _ = _harness(web)
    second.runtime.login_throttle.clock = clock
    for harness in (first, second, first):
        assert _token(harness, "rad", "wrong-password").status_code == 401
    assert _token(second, "rad", PASSWORD).status_code == 429


def test_the_login_page_says_how_long_to_wait(web: Any) -> None:  # noqa: F811
    harness, clock = _harness(web)
    client = harness.client
    csrf = csrf_of(client.get("/login").text)
    form = {"username": "rad", "password": "wrong-password", "csrf_token": csrf, "next": "/"}
    for _ in range(3):
        assert client.post("/login", data=form).status_code == 401
    hashed = password_verifications()
    page = client.post("/login", data={**form, "password": PASSWORD}, follow_redirects=False)
    assert page.status_code == 429 and page.headers["Retry-After"] == "1"
    assert "Too many failed sign-ins for this account; try again in 1 second." in page.text
    assert 'value="rad"' in page.text and password_verifications() == hashed
    clock.advance(1.1)
    signed_in = client.post("/login", data={**form, "password": PASSWORD}, follow_redirects=False)
    assert signed_in.status_code == 303


def test_a_lock_is_audited_with_its_length(web: Any) -> None:  # noqa: F811
    harness, _ = _harness(web)
    for _ in range(3):
        _token(harness, "rad", "wrong-password")
    from app.web.services.audit import list_audit

    with harness.runtime.session_factory() as db:
        failed = list_audit(db, action="auth.login_failed")
    assert [e.detail.get("locked_for_s") for e in failed] == [None, None, 1]
    assert all(e.detail["username"] == "rad" for e in failed)
