"""Admin-only user management."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from app.web.core.auth import require_api_admin
from app.web.core.models import User
from app.web.deps import get_db
from app.web.schemas import UserCreateIn, UserOut, UserUpdateIn
from app.web.services.users import create_user, list_users, update_user

router = APIRouter(tags=["users"])


def _out(user: User) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


@router.get("/users", response_model=list[UserOut])
def users(admin: User = Depends(require_api_admin), db: Session = Depends(get_db)) -> list[UserOut]:
    return [_out(u) for u in list_users(db)]


@router.post("/users", status_code=201, response_model=UserOut)
def new_user(
    body: UserCreateIn, admin: User = Depends(require_api_admin), db: Session = Depends(get_db)
) -> UserOut:
    return _out(create_user(db, body.username, body.password, body.role, actor=admin))


@router.patch("/users/{user_id}", response_model=UserOut)
def change_user(
    user_id: int, body: UserUpdateIn, admin: User = Depends(require_api_admin), db: Session = Depends(get_db)
) -> UserOut:
    return _out(update_user(db, user_id, admin, role=body.role, active=body.active, password=body.password))
