"""Who a case is assigned to, and who is reading it now (``study_claims``, migration 0010).

The reading lock is soft: opening a case takes it for ``LOCK_S`` seconds when nobody else holds
it, the open case page renews it, and it simply runs out when the page is closed. It only tells
other readers that someone has the case open; it never blocks a read (the diagnosis chain's
``based_on`` check refuses a sign-off made on a stale view). Taking, taking over and releasing a
lock, and every assignment, are audited; renewals are not (one row a minute per open page would
bury the real events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload

from app.web.core.db import insert_for, utcnow
from app.web.core.models import Study, StudyClaim, User
from app.web.errors import InvalidInput, NotFound
from app.web.services.audit import record_event

LOCK_S = 300  # the case page renews every minute; a closed page frees the case within 5 minutes
# A renewal this soon after the last one changes nothing worth a write: re-opening or reloading
# the page of a case one already holds then costs one read instead of a locked row and a commit.
RENEW_AFTER_S = 30


@dataclass(frozen=True)
class ClaimView:
    """What the worklist and the case page show of a case's claim."""

    assigned_to: str | None
    assigned_to_id: int | None
    locked_by: str | None
    locked_by_id: int | None
    lock_expires_at: datetime | None


def _live_lock(claim: StudyClaim, now: datetime) -> bool:
    return (
        claim.lock_user_id is not None and claim.lock_expires_at is not None and claim.lock_expires_at > now
    )


def claim_view(claim: StudyClaim | None, now: datetime | None = None) -> ClaimView:
    if claim is None:
        return ClaimView(None, None, None, None, None)
    live = _live_lock(claim, now or utcnow())
    return ClaimView(
        assigned_to=claim.assigned_to.username if claim.assigned_to else None,
        assigned_to_id=claim.assigned_to_id,
        locked_by=claim.lock_user.username if live and claim.lock_user else None,
        locked_by_id=claim.lock_user_id if live else None,
        lock_expires_at=claim.lock_expires_at if live else None,
    )


def claims_for(db: Session, study_ids: list[int]) -> dict[int, ClaimView]:
    """The claims of these cases (cases without one are absent)."""
    if not study_ids:
        return {}
    now = utcnow()
    rows = db.scalars(
        select(StudyClaim)
        .where(StudyClaim.study_id.in_(study_ids))
        .options(selectinload(StudyClaim.assigned_to), selectinload(StudyClaim.lock_user))
    )
    return {row.study_id: claim_view(row, now) for row in rows}


def _fresh_own_lock(db: Session, study_id: int, user: User, now: datetime) -> StudyClaim | None:
    """The claim when ``user`` holds its lock and renewed it less than RENEW_AFTER_S ago, else None."""
    claim = db.scalar(
        select(StudyClaim)
        .where(StudyClaim.study_id == study_id, StudyClaim.lock_user_id == user.id)
        .options(joinedload(StudyClaim.assigned_to), joinedload(StudyClaim.lock_user))
        .execution_options(populate_existing=True)
    )
    if claim is None or not _live_lock(claim, now):
        return None
    assert claim.lock_expires_at is not None
    renewed_s_ago = LOCK_S - (claim.lock_expires_at - now).total_seconds()
    return claim if renewed_s_ago < RENEW_AFTER_S else None


def _claim_row(db: Session, study_id: int) -> StudyClaim:
    if db.get(Study, study_id) is None:
        raise NotFound(f"case {study_id} does not exist")
    claim = db.get(StudyClaim, study_id, with_for_update=True)
    if claim is None:
        # Two readers opening a case for the first time at the same instant both find no claim;
        # the conflict-ignoring insert lets exactly one create it (a plain INSERT gave the other
        # a 500), and both then lock the one row.
        db.execute(insert_for(db)(StudyClaim).values(study_id=study_id).on_conflict_do_nothing())
        claim = db.scalars(select(StudyClaim).where(StudyClaim.study_id == study_id).with_for_update()).one()
    return claim


def take_lock(db: Session, study_id: int, user: User, *, take_over: bool = False) -> ClaimView:
    """Take or renew the reading lock for ``user`` (committed). Another reader's live lock is
    left alone (the answer names them) unless ``take_over``. Audits "study.lock" when the lock
    changes hands, not on a renewal."""
    now = utcnow()
    fresh = _fresh_own_lock(db, study_id, user, now)
    if fresh is not None:
        return claim_view(fresh, now)
    claim = _claim_row(db, study_id)
    held_by_other = _live_lock(claim, now) and claim.lock_user_id != user.id
    if held_by_other and not take_over:
        db.commit()
        return claim_view(claim, now)
    renewing = _live_lock(claim, now) and claim.lock_user_id == user.id
    if not renewing:
        record_event(
            db,
            user,
            "study.lock",
            study_id=study_id,
            taken_from_user_id=claim.lock_user_id if held_by_other else None,
        )
        claim.locked_at = now
    claim.lock_user_id = user.id
    claim.lock_expires_at = now + timedelta(seconds=LOCK_S)
    db.commit()
    db.refresh(claim)
    return claim_view(claim, now)


def release_lock(db: Session, study_id: int, user: User) -> None:
    """Give up the user's own reading lock (committed, audited "study.unlock"); no-op otherwise."""
    claim = db.get(StudyClaim, study_id, with_for_update=True)
    if claim is None or claim.lock_user_id != user.id or not _live_lock(claim, utcnow()):
        db.rollback()
        return
    claim.lock_user_id = None
    claim.lock_expires_at = None
    claim.locked_at = None
    record_event(db, user, "study.unlock", study_id=study_id)
    db.commit()


def assign(db: Session, study_id: int, actor: User, assignee_id: int | None) -> ClaimView:
    """Assign the case to an active user, or unassign it with None (committed, audited "study.assign")."""
    assignee: User | None = None
    if assignee_id is not None:
        assignee = db.get(User, assignee_id)
        if assignee is None or not assignee.active:
            raise InvalidInput("choose an active user to assign the case to")
    claim = _claim_row(db, study_id)
    previous = claim.assigned_to_id
    claim.assigned_to_id = assignee.id if assignee else None
    claim.assigned_by_id = actor.id
    claim.assigned_at = utcnow()
    record_event(
        db,
        actor,
        "study.assign",
        study_id=study_id,
        assigned_to_user_id=claim.assigned_to_id,
        previous_user_id=previous,
    )
    db.commit()
    db.refresh(claim)
    return claim_view(claim)
