"""Sign in and sign out."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from app.web.core.auth import end_session, safe_next_url, session_user, start_session
from app.web.core.csrf import csrf_token_valid, verify_csrf
from app.web.deps import get_db
from app.web.pages.rendering import render
from app.web.services.users import authenticate

router = APIRouter()


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/", db: Session = Depends(get_db)) -> Response:
    if session_user(request, db) is not None:
        return RedirectResponse(safe_next_url(next), status_code=303)
    return render(request, "login.html", None, next_url=safe_next_url(next))


@router.post("/login", include_in_schema=False)
def login_submit(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
    csrf_token: str = Form(""),
    db: Session = Depends(get_db),
) -> Response:
    next_url = safe_next_url(next)
    if not csrf_token_valid(request, csrf_token):
        # Usually a login page left open past a server restart or with cookies blocked.
        return render(
            request,
            "login.html",
            None,
            status_code=400,
            next_url=next_url,
            username=username,
            error="This sign-in form has expired. Please try again (cookies must be enabled).",
        )
    user = authenticate(db, username, password)
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
    start_session(request, response, user)
    return response


@router.post("/logout", include_in_schema=False, dependencies=[Depends(verify_csrf)])
def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    end_session(request, response)
    return response
