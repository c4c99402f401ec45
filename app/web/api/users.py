"""Admin-only user management."""

from __future__ import annotations

from fastapi import APIRouter

from app.web.core.input_guard import RowId
from app.web.deps import ApiAdmin, DbSession
from app.web.schemas import UserCreateIn, UserOut, UserUpdateIn
from app.web.services.users import create_user, list_users, update_user

router = APIRouter(tags=["users"])


@router.get("/users", response_model=list[UserOut])
def users(admin: ApiAdmin, db: DbSession) -> list[UserOut]:
    return list_users(db)


@router.post("/users", status_code=201, response_model=UserOut)
def new_user(body: UserCreateIn, admin: ApiAdmin, db: DbSession) -> UserOut:
    return create_user(db, body.username, body.password, body.role, actor=admin)


@router.patch("/users/{user_id}", response_model=UserOut)
def change_user(user_id: RowId, body: UserUpdateIn, admin: ApiAdmin, db: DbSession) -> UserOut:
    return update_user(db, user_id, admin, role=body.role, active=body.active, password=body.password)
