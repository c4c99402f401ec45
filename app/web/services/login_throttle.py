"""Sign-in throttling per account and per client address, kept in the database.

After ``limit`` failed sign-ins of one account (or from one client address) within the window,
the account (or address) is locked for base·2^(n−limit) seconds after its n-th failure, capped.
Attempts while locked are refused with 429 *before* the password is hashed: argon2 costs
~170 ms of CPU, so throttling also bounds what a password-guessing client can burn. Refused
attempts do not count as failures, so waiting out the lock is always enough.

The counts live in the ``login_throttle`` table (migration 0004), so every server process
refuses the same attempts. Failures of unknown user names count too: a lock says nothing about
whether the account exists. A successful sign-in clears its account's count, never its
address's: one valid account must not reset an address's guessing budget.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.web.core.db import utcnow
from app.web.core.models import LoginThrottleRow
from app.web.errors import TooManyAttempts
from app.web.settings import Settings

log = logging.getLogger(__name__)

ACCOUNT, ADDRESS = "account", "address"
_KEY_LENGTH = 128  # the column's width


@dataclass(frozen=True)
class ThrottlePolicy:
    account_limit: int = 5
    address_limit: int = 20
    window_s: float = 3600.0
    base_s: float = 1.0
    max_s: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            account_limit=settings.login_max_failures_per_account,
            address_limit=settings.login_max_failures_per_address,
            window_s=settings.login_failure_window_s,
            base_s=settings.login_backoff_base_s,
            max_s=settings.login_backoff_max_s,
        )

    def lock_s(self, scope: str, failures: int) -> float | None:
        """How long ``failures`` failures lock the account or address; None below the limit."""
        limit = self.account_limit if scope == ACCOUNT else self.address_limit
        if failures < limit:
            return None
        # min() before the power would overflow a float after ~1000 failures; cap the exponent.
        return min(self.base_s * 2.0 ** min(failures - limit, 64), self.max_s)


def wait_text(seconds: int) -> str:
    """'32 seconds', '1 minute', '15 minutes': how a person reads a wait."""
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def _keys(username: str, address: str | None) -> list[tuple[str, str]]:
    # Lower-cased so that "Rad" and "RAD" share the budget of "rad".
    keys = [(ACCOUNT, username.strip().lower()[:_KEY_LENGTH])]
    if address:
        keys.append((ADDRESS, address[:_KEY_LENGTH]))
    return keys


def _matches(keys: list[tuple[str, str]]) -> object:
    return or_(*(and_(LoginThrottleRow.scope == s, LoginThrottleRow.key == k) for s, k in keys))


@dataclass
class LoginThrottle:
    """The throttle of one process. ``clock`` gives the current UTC time (tests pass their own)."""

    policy: ThrottlePolicy
    clock: Callable[[], datetime] = field(default=utcnow)

    def check(self, db: Session, username: str, address: str | None) -> None:
        """Raise TooManyAttempts while the account or the address is locked. Reads only."""
        now = self.clock()
        locks = db.execute(
            select(LoginThrottleRow.scope, LoginThrottleRow.locked_until).where(
                _matches(_keys(username, address)), LoginThrottleRow.locked_until > now
            )
        ).all()
        db.rollback()  # end the read transaction: the caller's next statements start fresh
        if not locks:
            return
        scope, until = max(locks, key=lambda lock: lock.locked_until)
        wait = max(1, math.ceil((until - now).total_seconds()))
        whose = "for this account" if scope == ACCOUNT else "from this computer's address"
        raise TooManyAttempts(f"too many failed sign-ins {whose}; try again in {wait_text(wait)}", wait)

    def record_failure(self, db: Session, username: str, address: str | None) -> float | None:
        """Count a failed sign-in (committed). Returns the account's lock in seconds, if any."""
        now = self.clock()
        window_start = now - timedelta(seconds=self.policy.window_s)
        account_lock = None
        for scope, key in _keys(username, address):
            failures = self._bump(db, scope, key, now, window_start)
            lock_s = self.policy.lock_s(scope, failures)
            if lock_s is not None:
                until = now + timedelta(seconds=lock_s)
                # Never shorten a lock: a concurrent failure may have set a longer one already.
                longest = case(
                    (LoginThrottleRow.locked_until > until, LoginThrottleRow.locked_until), else_=until
                )
                db.execute(
                    update(LoginThrottleRow)
                    .where(LoginThrottleRow.scope == scope, LoginThrottleRow.key == key)
                    .values(locked_until=longest)
                    .execution_options(synchronize_session=False)
                )
                log.info("sign-in locked for %.0f s (%s, %d failures)", lock_s, scope, failures)
                if scope == ACCOUNT:
                    account_lock = lock_s
            # Each count commits alone: a retry in _bump rolls back, and must not undo the other.
            db.commit()
        # Forget rows nobody has failed on for a window and that are not locked.
        db.execute(
            delete(LoginThrottleRow)
            .where(
                LoginThrottleRow.last_failure_at < window_start,
                or_(LoginThrottleRow.locked_until.is_(None), LoginThrottleRow.locked_until <= now),
            )
            .execution_options(synchronize_session=False)
        )
        db.commit()
        return account_lock

    def record_success(self, db: Session, username: str) -> None:
        """Clear the account's count (not committed: it commits with the sign-in)."""
        db.execute(
            delete(LoginThrottleRow)
            .where(_matches(_keys(username, None)))
            .execution_options(synchronize_session=False)
        )

    def _bump(self, db: Session, scope: str, key: str, now: datetime, window_start: datetime) -> int:
        """Add one failure to (scope, key), atomically across processes; returns the new count."""
        where = (LoginThrottleRow.scope == scope, LoginThrottleRow.key == key)
        for _ in range(3):
            # One UPDATE reads and writes the count under the row's lock, so two processes
            # failing at once both count. A count whose last failure left the window restarts.
            bumped = db.execute(
                update(LoginThrottleRow)
                .where(*where)
                .values(
                    failures=case(
                        (LoginThrottleRow.last_failure_at < window_start, 1),
                        else_=LoginThrottleRow.failures + 1,
                    ),
                    last_failure_at=now,
                )
                .returning(LoginThrottleRow.failures)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if bumped is not None:
                return int(bumped)
            db.add(LoginThrottleRow(scope=scope, key=key, failures=1, last_failure_at=now))
            try:
                db.commit()
            except IntegrityError:
                db.rollback()  # another process inserted the row first: update theirs
                continue
            return 1
        raise RuntimeError("the login_throttle row could not be written")  # pragma: no cover
