"""Sign in and sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from app.web.core.auth import end_session, safe_next_url, start_session
from app.web.core.csrf import CSRFRejected
from app.web.deps import DbSession, OptionalUser, RuntimeDep
from app.web.errors import InvalidInput, TooManyAttempts
from app.web.pages.rendering import render
from app.web.services.users import authenticate

router = APIRouter()


@router.get("/login", include_in_schema=False)
def login_page(request: Request, user: OptionalUser, next: str = "/") -> Response:
    if user is not None:
        return RedirectResponse(safe_next_url(next), status_code=303)
    return render(request, "login.html", None, next_url=safe_next_url(next))


def login_form_expired(request: Request, rejected: CSRFRejected) -> Response:
    """The login form again, filled in, when its CSRF token was missing or wrong.

    Usually a login page left open past a server restart or with cookies blocked,
    so a friendly retry beats an error page.
    """
    return render(
        request,
        "login.html",
        None,
        status_code=400,
        next_url=safe_next_url(rejected.fields.get("next")),
        username=rejected.fields.get("username", ""),
        error="This sign-in form has expired. Please try again (cookies must be enabled).",
    )


@router.post("/login", include_in_schema=False)
def login_submit(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    # The pages router has already checked the CSRF token (see app.web.pages).
    next_url = safe_next_url(next)
    address = request.client.host if request.client else None
    try:
        user = authenticate(db, runtime.login_throttle, username, password, address)
    except InvalidInput as exc:
        return render(
            request,
            "login.html",
            None,
            status_code=exc.status_code,
            next_url=next_url,
            username=username,
            error=exc.message[:1].upper() + exc.message[1:] + ".",
        )
    except TooManyAttempts as exc:
        page = render(
            request,
            "login.html",
            None,
            status_code=429,
            next_url=next_url,
            username=username,
            error=exc.message[:1].upper() + exc.message[1:] + ".",
        )
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    if user is None:
        return render(
            request,
            "login.html",
            None,
            status_code=401,
            next_url=next_url,
            username=username,
            error="Wrong user name or password, or the account is deactivated.",
        )
    response = RedirectResponse(next_url, status_code=303)
    start_session(request, response, db, user)
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, db: DbSession) -> Response:
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response, db)
    return response
