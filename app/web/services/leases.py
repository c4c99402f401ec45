"""Leases on running analyses: exactly one worker runs an analysis, and a dead worker's analysis
is taken again once its lease expires.

A claim is one conditional UPDATE: the analysis is "queued", or "running" with a lease that has
expired (NULL counts as expired: an older server's claim). It writes the owner, the expiry and
one more attempt. The owner renews the expiry with heartbeats (``LeaseKeeper``) while it works;
every later write of the owner (the result, a failure, a requeue) is conditional on still holding
the lease, so a worker that lost its lease (it stalled past the expiry and another took over)
can never write a second set of results.

Lease times are the workers' clocks (UTC), so hosts sharing a database keep them in sync (NTP);
a lease of a minute tolerates seconds of skew.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.web.core.db import utcnow
from app.web.core.db_retry import describe
from app.web.core.models import Analysis, Study

log = logging.getLogger(__name__)


def new_owner_id() -> str:
    """A worker's name in ``analyses.lease_owner``: host, process and a random part (at most 64
    characters), so that two threads, processes or hosts never share one."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


def claimable() -> Any:
    """The condition of an analysis another worker may take now."""
    return or_(
        Analysis.status == "queued",
        (Analysis.status == "running")
        & (or_(Analysis.lease_expires_at.is_(None), Analysis.lease_expires_at < utcnow())),
    )


def claim(db: Session, analysis_id: int, owner: str, lease_s: float, **values: Any) -> bool:
    """Take ``analysis_id`` for ``owner`` if it is queued or its lease expired; commits. ``values``
    are further columns to set (the model that runs it)."""
    now = utcnow()
    result = db.execute(
        update(Analysis)
        .where(Analysis.id == analysis_id, claimable())
        .values(
            status="running",
            started_at=now,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=Analysis.attempts + 1,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.rollback()
        return False
    study_id = db.scalar(select(Analysis.study_id).where(Analysis.id == analysis_id))
    db.execute(update(Study).where(Study.id == study_id).values(status="running"))
    db.commit()
    return True


def renew(db: Session, analysis_id: int, owner: str, lease_s: float) -> bool:
    """Push the expiry of ``owner``'s lease ``lease_s`` from now; False when the lease is lost."""
    result = db.execute(
        update(Analysis)
        .where(Analysis.id == analysis_id, Analysis.status == "running", Analysis.lease_owner == owner)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return result.rowcount == 1


def hold(db: Session, analysis_id: int, owner: str) -> Analysis | None:
    """Inside a transaction that will write the outcome: the analysis, locked (PostgreSQL: FOR
    UPDATE, so that no claim can slip in before the commit), if ``owner`` still holds its lease;
    else None and nothing may be written."""
    return db.scalar(
        select(Analysis)
        .where(Analysis.id == analysis_id, Analysis.status == "running", Analysis.lease_owner == owner)
        .with_for_update()
    )


def end_lease(analysis: Analysis) -> None:
    """Clear the lease of an analysis whose outcome is being written (done, failed or requeued)."""
    analysis.lease_owner = None
    analysis.lease_expires_at = None


def expired_or_queued(db: Session, limit: int = 1000) -> list[int]:
    """Analyses that a worker may take now, oldest first."""
    return list(db.scalars(select(Analysis.id).where(claimable()).order_by(Analysis.id).limit(limit)))


def expired(db: Session, limit: int = 1000) -> list[int]:
    """Running analyses whose lease has expired: their worker died or stalled."""
    return list(
        db.scalars(
            select(Analysis.id)
            .where(
                Analysis.status == "running",
                or_(Analysis.lease_expires_at.is_(None), Analysis.lease_expires_at < utcnow()),
            )
            .order_by(Analysis.id)
            .limit(limit)
        )
    )


class LeaseKeeper:
    """Renews one lease every third of its length while a ``with`` block runs (a thread), so a
    live worker's lease never expires, however long the analysis takes. ``lost`` turns True when a
    renewal finds the lease gone; the outcome's write then finds it gone too and writes nothing."""

    def __init__(
        self, session_factory: sessionmaker[Session], analysis_id: int, owner: str, lease_s: float
    ) -> None:
        self.session_factory = session_factory
        self.analysis_id = analysis_id
        self.owner = owner
        self.lease_s = lease_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{analysis_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self.session_factory() as db:
                    if not renew(db, self.analysis_id, self.owner, self.lease_s):
                        self.lost = True
                        log.warning(
                            "analysis %d: its lease was lost; the result will be dropped", self.analysis_id
                        )
                        return
            except Exception as exc:
                # A missed heartbeat is not fatal: the lease still runs, the next one may succeed.
                log.warning("analysis %d: heartbeat failed: %s", self.analysis_id, describe(exc))
