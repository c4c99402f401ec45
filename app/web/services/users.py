"""User accounts: authentication and admin-only management services.

Callers pass the acting user to management functions so that the change is
audited; routes must still check that the actor is an admin (ApiAdmin, PageAdmin).
Management functions return ``UserOut`` (never the password hash); ``authenticate``
returns the ORM user, which sign-in needs.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.web.core.db import utcnow
from app.web.core.models import ROLES, User
from app.web.core.security import MAX_PASSWORD_LENGTH, hash_password, verify_password
from app.web.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.web.schemas import UserOut
from app.web.services.audit import record_event
from app.web.services.credentials import revoke_user_credentials
from app.web.services.login_throttle import LoginThrottle
from app.web.services.password_policy import check_password

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
# Verified against when the username is unknown, so both paths take the same time.
_DUMMY_HASH = hash_password("not-a-real-password")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of: {', '.join(ROLES)}")


def authenticate(
    db: Session, throttle: LoginThrottle, username: str, password: str, address: str | None
) -> User | None:
    """The active user with these credentials, or None. Records the attempt (committed).

    Raises TooManyAttempts (429) while the account or the client ``address`` is locked by
    ``throttle``; that check comes first, so a refused attempt costs no password hash. A password
    longer than any that can be set is refused (422) before the throttle and the hash: it cannot
    be right, and hashing a megabyte on request would be a way to tie up the CPU.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    name = username.strip()
    throttle.check(db, name, address)
    user = db.scalar(select(User).where(User.username == name))
    ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not ok or not user.active:
        locked_s = throttle.record_failure(db, name, address)
        detail = {"locked_for_s": round(locked_s)} if locked_s is not None else {}
        record_event(db, None, "auth.login_failed", username=name[:64], **detail)
        db.commit()
        return None
    throttle.record_success(db, name)
    user.last_login_at = utcnow()
    record_event(db, user, "auth.login")
    db.commit()
    return user


def user_out(user: User) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


def get_user(db: Session, user_id: int) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def list_users(db: Session) -> list[UserOut]:
    return [user_out(u) for u in db.scalars(select(User).order_by(User.username))]


def count_active_admins(db: Session) -> int:
    return int(db.scalar(select(func.count()).where(User.role == "admin", User.active.is_(True))) or 0)


def create_user(
    db: Session, username: str, password: str, role: str = "radiologist", actor: User | None = None
) -> UserOut:
    """Create and commit a user. Raises InvalidInput or Conflict (username taken)."""
    username = username.strip()
    if not _USERNAME.match(username):
        raise InvalidInput("a username has 2-64 letters, digits or . _ @ -")
    _check_role(role)
    check_password(password, username)
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"the username {username!r} is taken")
    user = User(username=username, password_hash=hash_password(password), role=role, active=True)
    db.add(user)
    db.flush()
    record_event(db, actor, "user.create", target_user_id=user.id, role=role)
    db.commit()
    return user_out(user)


def update_user(
    db: Session,
    user_id: int,
    actor: User,
    *,
    role: str | None = None,
    active: bool | None = None,
    password: str | None = None,
) -> UserOut:
    """Change role, active flag and/or password. Never leaves the system without an active admin.

    A password change and a deactivation end all of the user's sessions and API tokens."""
    user = get_user(db, user_id)
    changes: dict[str, object] = {}
    if role is not None and role != user.role:
        _check_role(role)
        changes["role"] = role
    if active is not None and active != user.active:
        changes["active"] = active
    losing_admin = (
        user.role == "admin"
        and user.active
        and (changes.get("role", "admin") != "admin" or changes.get("active", True) is False)
    )
    if losing_admin and count_active_admins(db) <= 1:
        raise Forbidden("this is the last active administrator; create another administrator first")
    if password is not None:
        check_password(password, user.username)
        user.password_hash = hash_password(password)
    if "role" in changes:
        user.role = str(changes["role"])
    if "active" in changes:
        user.active = bool(changes["active"])
    ended: dict[str, int] = {}
    if password is not None or changes.get("active") is False:
        # A new password means the old one may be known to someone else, and a deactivated user
        # must stay out after a reactivation: every session and API token of the user ends.
        ended = revoke_user_credentials(db, user.id)
    record_event(
        db,
        actor,
        "user.update",
        target_user_id=user.id,
        password_changed=password is not None,
        **changes,
        **ended,
    )
    db.commit()
    return user_out(user)


def bootstrap_admin(db: Session, password: str | None) -> tuple[UserOut | None, str | None]:
    """Create user "admin" if no admin exists.

    Returns (user, generated_password): (None, None) when an admin already
    exists; generated_password is set only when ``password`` was not given.
    """
    if db.scalar(select(User.id).where(User.role == "admin")) is not None:
        return None, None
    from app.web.core.security import generate_password

    generated = None if password else generate_password()
    user = create_user(db, "admin", password or str(generated), role="admin")
    return user, generated
