"""Server-side credentials: browser sessions and API bearer tokens, each a row that can be revoked.

The browser's cookie and the API client's token carry a random secret; the database stores only
its sha256 (the secrets are 256-bit random values, so a fast hash is enough and a copy of the
database signs nobody in). A credential is good only while its row says so:

- a session ends when its user signs out, when it has been idle for ``idle_s``, ``max_age_s``
  after sign-in however busy it was, and when its user's password changes or the user is
  deactivated (``revoke_user_credentials``);
- a token ends at its ``expires_at``, when its owner or an admin revokes it, and when its
  owner's password changes or the owner is deactivated. Reactivating a user brings none back.

The user is reloaded on every request and must be active, so a role change takes effect at once.
Nothing here knows HTTP: app.web.core.auth puts sessions into cookies, app.web.api reads tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.web.core.db import utcnow
from app.web.core.models import ApiToken, User, UserSession
from app.web.errors import InvalidInput, NotFound
from app.web.schemas import ApiTokenOut
from app.web.services.audit import record_event

TOKEN_PREFIX = "fcns_"
# Revoked and expired token rows are kept this long (the audit trail names their ids), then purged.
_KEEP_DEAD_TOKENS = timedelta(days=30)
# last_used_at is written at most this often per token, so a busy client does not write on every call.
_TOKEN_TOUCH = timedelta(seconds=60)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    """When a browser session ends: ``idle_s`` after its last use, ``max_age_s`` after sign-in."""

    idle_s: int
    max_age_s: int

    @property
    def touch_every(self) -> timedelta:
        # last_seen_at is written at most this often: a page load fetches many images, and a write
        # per request would serialise them on SQLite. The idle timeout is then exact to a tenth.
        return timedelta(seconds=min(60.0, self.idle_s / 10))

    def expired(self, row: UserSession, now: datetime) -> bool:
        return now - row.created_at >= timedelta(
            seconds=self.max_age_s
        ) or now - row.last_seen_at >= timedelta(seconds=self.idle_s)


# ---- sessions ----------------------------------------------------------------------------
def start_session(db: Session, user: User, policy: SessionPolicy) -> str:
    """A new session for ``user`` (committed); returns the secret for the cookie."""
    now = utcnow()
    _purge_sessions(db, policy, now)
    secret = secrets.token_urlsafe(32)
    db.add(UserSession(user_id=user.id, secret_hash=secret_hash(secret), created_at=now, last_seen_at=now))
    db.commit()
    return secret


def _purge_sessions(db: Session, policy: SessionPolicy, now: datetime) -> None:
    """Delete every session that has already ended (done at sign-in, which is rare enough)."""
    db.execute(
        delete(UserSession).where(
            or_(
                UserSession.created_at <= now - timedelta(seconds=policy.max_age_s),
                UserSession.last_seen_at <= now - timedelta(seconds=policy.idle_s),
            )
        )
    )


def session_user(db: Session, secret: str, policy: SessionPolicy) -> User | None:
    """The active user of the session ``secret``, or None when it has ended; marks it used."""
    # One statement for the session and its user: this runs on every page request.
    found = db.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.secret_hash == secret_hash(secret))
    ).first()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if policy.expired(row, now):
        # Statements, not ORM deletes: two requests of one browser may end it at the same time.
        db.execute(delete(UserSession).where(UserSession.id == row.id))
        db.commit()
        return None
    if not user.active:
        return None
    if now - row.last_seen_at >= policy.touch_every:
        db.execute(update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now))
        db.commit()
    return user


def end_session(db: Session, secret: str) -> None:
    """Sign-out: delete the session ``secret`` (committed, audited); unknown secrets are ignored."""
    row = db.scalar(select(UserSession).where(UserSession.secret_hash == secret_hash(secret)))
    if row is None:
        return
    user = db.get(User, row.user_id)
    db.execute(delete(UserSession).where(UserSession.id == row.id))
    record_event(db, user, "auth.logout", session_id=row.id)
    db.commit()


def revoke_user_credentials(db: Session, user_id: int, *, tokens: bool = True) -> dict[str, int]:
    """End every session of the user and, with ``tokens``, revoke every live token (not committed:
    the caller commits it with the change that calls for it). Returns the counts for the audit."""
    ended = db.execute(delete(UserSession).where(UserSession.user_id == user_id)).rowcount
    revoked = 0
    if tokens:
        now = utcnow()
        revoked = db.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > now)
            .values(revoked_at=now)
        ).rowcount
    return {"sessions_ended": int(ended or 0), "tokens_revoked": int(revoked or 0)}


# ---- API tokens --------------------------------------------------------------------------
def issue_token(
    db: Session, user: User, name: str, lifetime_s: int, actor: User | None = None
) -> tuple[ApiTokenOut, str]:
    """A new token for ``user`` (committed); returns it and its secret, shown once.

    With ``actor`` (a named token created through the API) the creation is audited; a sign-in
    token is covered by the sign-in's own ``auth.login`` event.
    """
    name = name.strip()
    if not 1 <= len(name) <= 64:
        raise InvalidInput("a token name has 1-64 characters")
    now = utcnow()
    db.execute(
        delete(ApiToken).where(
            ApiToken.user_id == user.id,
            or_(ApiToken.expires_at < now - _KEEP_DEAD_TOKENS, ApiToken.revoked_at < now - _KEEP_DEAD_TOKENS),
        )
    )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id,
        name=name,
        secret_hash=secret_hash(secret),
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime_s),
    )
    db.add(row)
    db.flush()
    if actor is not None:
        record_event(
            db,
            actor,
            "token.create",
            token_id=row.id,
            owner_user_id=user.id,
            name=name,
            expires_at=row.expires_at.isoformat(),
        )
    db.commit()
    return token_out(row, user.username), secret


def token_user(db: Session, secret: str) -> User | None:
    """The active owner of the live token ``secret``, or None; records when it was last used."""
    # One statement for the token and its owner, on every API request. The secret is 256 random
    # bits, so its sha256 is the lookup key: no slow password hash per request.
    found = db.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.secret_hash == secret_hash(secret))
    ).first()
    now = utcnow()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or row.expires_at <= now or not user.active:
        return None
    if row.last_used_at is None or now - row.last_used_at >= _TOKEN_TOUCH:
        db.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        db.commit()
    return user


def token_out(row: ApiToken, username: str) -> ApiTokenOut:
    return ApiTokenOut(
        id=row.id,
        name=row.name,
        user_id=row.user_id,
        username=username,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def list_tokens(db: Session, user_id: int | None = None, include_ended: bool = False) -> list[ApiTokenOut]:
    """Tokens, newest first: of one user, or of everyone (``user_id`` None, for admins).
    Only live ones unless ``include_ended``."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    if not include_ended:
        query = query.where(ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow())
    query = query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    return [token_out(row, username) for row, username in db.execute(query)]


def revoke_token(db: Session, token_id: int, actor: User) -> ApiTokenOut:
    """Revoke one token (committed, audited). Its owner or an admin may; anyone else is told it
    does not exist, so token ids of other users cannot be probed. Revoking twice changes nothing."""
    row = db.get(ApiToken, token_id)
    if row is None or (row.user_id != actor.id and not actor.is_admin):
        raise NotFound("no such API token")
    owner = db.get(User, row.user_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        record_event(db, actor, "token.revoke", token_id=row.id, owner_user_id=row.user_id, name=row.name)
        db.commit()
    return token_out(row, owner.username if owner else "")
