"""Transient database errors, and retrying the work that met one.

A transient error says nothing about the data: the database was busy, or the connection went
away, and the same transaction run again a moment later succeeds. On SQLite that is "database
is locked" (a writer held the lock past the busy timeout); on PostgreSQL a serialization
failure, a detected deadlock, a lock timeout or a lost connection. The analysis worker retries
these with a bounded backoff instead of marking an analysis failed; any other error is real.

Retried work must be a whole transaction (open a session, work, commit), so that running it
again repeats nothing that was committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATE classes and codes that a retry cures: connection exceptions (08),
# serialization failure and deadlock (40001, 40P01), lock not available (55P03), the server
# shutting down or cancelling (57P01-57P03, 57014 when a statement timeout fires).
_TRANSIENT_SQLSTATE_PREFIXES = ("08",)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "57014"})
# SQLite (and drivers that give no SQLSTATE): the words of the message.
_TRANSIENT_WORDS = (
    "database is locked",
    "database table is locked",
    "database is busy",
    "deadlock detected",
    "could not serialize access",
    "connection reset",
    "server closed the connection",
    "connection is closed",
    "terminating connection",
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that the same transaction, run again, may not meet."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
    if not isinstance(exc, OperationalError):
        return False
    message = str(exc.orig).lower()
    return any(words in message for words in _TRANSIENT_WORDS)


def describe(exc: BaseException) -> str:
    """A log-safe description: the error's class and SQLSTATE, never its text (which can quote
    a statement) nor its parameters."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    name = type(orig).__name__ if orig is not None else type(exc).__name__
    return f"{name} (SQLSTATE {sqlstate})" if sqlstate else name


def retry_transient(
    work: Callable[[], T],
    what: str,
    *,
    attempts: int = 6,
    first_delay_s: float = 0.2,
    max_delay_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``work``; on a transient database error wait (doubling, capped) and run it again.

    At most ``attempts`` runs, so about 15 s of waiting with the defaults; then the last
    transient error is raised. Any other error is raised at once.
    """
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            log.warning(
                "%s met a transient database error, %s; retry %d of %d in %.1f s",
                what,
                describe(exc),
                attempt,
                attempts - 1,
                delay,
            )
        sleep(delay)
        delay = min(delay * 2, max_delay_s)
    raise AssertionError("unreachable")
