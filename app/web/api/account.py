"""The signed-in user's own account: POST /api/v1/account/password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.web.api.contract import CHANGE, errors
from app.web.deps import ApiUser, DbSession, RuntimeDep
from app.web.schemas import PasswordChangeIn
from app.web.services.users import change_own_password

router = APIRouter(tags=["account"])


@router.post(
    "/account/password",
    status_code=204,
    summary="Change your password",
    response_description="changed; every session and token of yours has ended",
    responses=errors(*CHANGE, 429),
)
def change_password(
    request: Request, body: PasswordChangeIn, user: ApiUser, db: DbSession, runtime: RuntimeDep
) -> Response:
    """Set a new password. Every session and API token of yours ends, this request's included:
    sign in again with the new password. 403 when the current password is wrong, 422 when the
    new one breaks the password policy, 429 while sign-ins to the account are throttled."""
    address = request.client.host if request.client else None
    change_own_password(db, runtime.login_throttle, user, body.current_password, body.new_password, address)
    return Response(status_code=204)
