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
    user = find_user(db, name)
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


def find_user(db: Session, username: str) -> User | None:
    """The user with this name, whatever its case (names are unique regardless of case, 0010)."""
    return db.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))


def _check_username(db: Session, username: str, except_id: int | None = None) -> str:
    username = username.strip()
    if not _USERNAME.match(username):
        raise InvalidInput("a username has 2-64 letters, digits or . _ @ -")
    taken = find_user(db, username)
    if taken is not None and taken.id != except_id:
        same = "" if taken.username == username else f" (as {taken.username!r}; names ignore case)"
        raise Conflict(f"the username {username!r} is taken{same}")
    return username


def list_users(db: Session) -> list[UserOut]:
    return [user_out(u) for u in db.scalars(select(User).order_by(User.username))]


def count_active_admins(db: Session) -> int:
    return int(db.scalar(select(func.count()).where(User.role == "admin", User.active.is_(True))) or 0)


def create_user(
    db: Session, username: str, password: str, role: str = "radiologist", actor: User | None = None
) -> UserOut:
    """Create and commit a user. Raises InvalidInput or Conflict (username taken)."""
    username = _check_username(db, username)
    _check_role(role)
    check_password(password, username)
    user = User(username=username, password_hash=hash_password(password), role=role, active=True)
    db.add(user)
    db.flush()
    record_event(db, actor, "user.create", target_user_id=user.id, role=role)
    db.commit()
    return user_out(user)


def update_user(
    db: Session,
    user_id: int,
    actor: User | None,
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


def rename_user(db: Session, user_id: int, new_name: str, actor: User | None) -> UserOut:
    """Give a user another name (committed, audited "user.rename"). Past audit rows keep the
    name the user had then; the rename row links both."""
    user = get_user(db, user_id)
    old = user.username
    new_name = _check_username(db, new_name, except_id=user.id)
    if new_name == old:
        return user_out(user)
    user.username = new_name
    record_event(db, actor, "user.rename", target_user_id=user.id, old_username=old, new_username=new_name)
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


def change_own_password(
    db: Session, throttle: LoginThrottle, user: User, current: str, new: str, address: str | None
) -> dict[str, int]:
    """A signed-in user sets a new password (committed, audited). Every session and API token of
    the user ends, the one in use included: whoever knew the old password is out; the caller
    signs this browser in again.

    The current password is checked like a sign-in: throttled first (429), and a wrong one counts
    as a failed sign-in, so a forgotten open session is no way to guess it. Raises Forbidden
    (403) for a wrong current password and InvalidInput (422) for a new one the policy refuses.
    """
    if len(current) > MAX_PASSWORD_LENGTH:
        raise Forbidden("the current password is wrong")
    throttle.check(db, user.username, address)
    if not verify_password(user.password_hash, current):
        locked_s = throttle.record_failure(db, user.username, address)
        detail = {"locked_for_s": round(locked_s)} if locked_s is not None else {}
        record_event(db, user, "user.password_change_failed", **detail)
        db.commit()
        raise Forbidden("the current password is wrong")
    check_password(new, user.username)
    if new == current:
        raise InvalidInput("the new password is the same as the current one")
    user = get_user(db, user.id)  # this session's row, whatever object the caller holds
    user.password_hash = hash_password(new)
    ended = revoke_user_credentials(db, user.id)
    record_event(db, user, "user.password_change", target_user_id=user.id, **ended)
    db.commit()
    return ended
