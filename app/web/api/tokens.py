"""API tokens: list, create and revoke (/api/v1/tokens); admins see and revoke everyone's."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.web.api.contract import ADMIN, CHANGE, SIGNED_IN, errors
from app.web.core.input_guard import RowId
from app.web.deps import ApiAdmin, ApiUser, DbSession, RuntimeDep
from app.web.errors import InvalidInput
from app.web.schemas import ApiTokenCreateIn, ApiTokenOut, NewApiTokenOut
from app.web.services.credentials import issue_token, list_tokens, revoke_token
from app.web.services.users import get_user

router = APIRouter(tags=["tokens"])


@router.get(
    "/tokens",
    response_model=list[ApiTokenOut],
    summary="Your API tokens",
    response_description="the live tokens, newest first",
    responses=errors(*SIGNED_IN),
)
def my_tokens(user: ApiUser, db: DbSession) -> list[ApiTokenOut]:
    """Your live API tokens (not revoked, not expired), newest first; never their secrets."""
    return list_tokens(db, user.id)


@router.post(
    "/tokens",
    status_code=201,
    response_model=NewApiTokenOut,
    summary="Create an API token",
    response_description="the token, with its secret (shown only in this answer)",
    responses=errors(*CHANGE),
)
def new_token(body: ApiTokenCreateIn, user: ApiUser, db: DbSession, runtime: RuntimeDep) -> NewApiTokenOut:
    """A named token for a script or another system; its secret is in this answer only."""
    limit = runtime.settings.token_max_lifetime_s
    lifetime = body.expires_in_s or min(runtime.settings.token_max_age_s, limit)
    if lifetime > limit:
        raise InvalidInput(f"a token may live at most {limit} seconds (FETALCNS_TOKEN_MAX_LIFETIME_S)")
    token, secret = issue_token(db, user, body.name, lifetime, actor=user)
    return NewApiTokenOut(**token.model_dump(), access_token=secret)


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    summary="Revoke an API token",
    response_description="revoked; the token is refused from now on",
    responses=errors(401, 403, 404, 413, 422),
)
def delete_token(token_id: RowId, user: ApiUser, db: DbSession) -> Response:
    """Revoke a token at once: your own, or anyone's for an admin (404 for a token you cannot see)."""
    revoke_token(db, token_id, user)
    return Response(status_code=204)


@router.get(
    "/users/{user_id}/tokens",
    response_model=list[ApiTokenOut],
    summary="A user's API tokens (administrators)",
    response_description="the user's tokens, newest first",
    responses=errors(*ADMIN, 404),
)
def user_tokens(
    user_id: RowId, admin: ApiAdmin, db: DbSession, include_ended: bool = False
) -> list[ApiTokenOut]:
    """Admins: one user's tokens; with ``include_ended``, revoked and expired ones too."""
    get_user(db, user_id)  # 404 for an unknown user
    return list_tokens(db, user_id, include_ended=include_ended)
