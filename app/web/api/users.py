"""Admin-only user management."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.api.contract import ADMIN, errors
from app.web.core.input_guard import RowId
from app.web.deps import ApiAdmin, DbSession
from app.web.schemas import UserCreateIn, UserOut, UserUpdateIn
from app.web.services.users import create_user, list_users, update_user

router = APIRouter(tags=["users"])


@router.get(
    "/users",
    response_model=list[UserOut],
    summary="List the users (administrators)",
    response_description="every account, active or not",
    responses=errors(*ADMIN),
)
def users(admin: ApiAdmin, db: DbSession) -> list[UserOut]:
    """Every account with its role, whether it is active and its last sign-in."""
    return list_users(db)


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    summary="Create a user (administrators)",
    response_description="the new account",
    responses=errors(*ADMIN, 400, 409, 413),
)
def new_user(body: UserCreateIn, admin: ApiAdmin, db: DbSession) -> UserOut:
    """A new active account. 409 when the user name is taken; 422 for a user name or
    password the rules refuse."""
    return create_user(db, body.username, body.password, body.role, actor=admin)


@router.patch(
    "/users/{user_id}",
    response_model=UserOut,
    summary="Change a user (administrators)",
    response_description="the account as changed",
    responses=errors(*ADMIN, 400, 404, 413),
)
def change_user(user_id: RowId, body: UserUpdateIn, admin: ApiAdmin, db: DbSession) -> UserOut:
    """Role, active or not, and a new password; fields left out stay as they are. 403 when
    the change would leave no active administrator."""
    return update_user(db, user_id, admin, role=body.role, active=body.active, password=body.password)
