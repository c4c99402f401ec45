"""The error half of the OpenAPI contract: the one error body and what each status means.

Every error the API sends is ``{"detail": "<a sentence>"}`` (app.web.app's handlers, the
request-size and input guards), whatever raised it. FastAPI would document a 422 as its own
list-of-errors shape, which the app never sends, and no other error at all; so each route
names the statuses it can answer with ``responses=errors(...)``, and all of them point at
``ErrorOut``. tests/test_web_openapi.py checks every operation against the rules below, and
tests/test_web_schemathesis.py checks real answers against the document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, in words meant for the person using the app")


# Why each status happens, as the operation's documentation says it.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be read: not UTF-8 JSON, or a broken form or multipart upload.",
    401: "Not signed in, or the token has expired or been revoked. Carries `WWW-Authenticate: Bearer`.",
    403: "Signed in, but not allowed: an administrator's action, or a cookie-authenticated change "
    "without the CSRF token.",
    404: "The case, image, user or token does not exist (or the stored file is missing).",
    409: "Conflicts with the current state, e.g. the case was signed meanwhile, or the name is taken.",
    413: "The request body is larger than the server's limit.",
    422: "A value is invalid: the message names the field and the rule (a control character, an id "
    "out of range, a date outside 1900–2100 ...).",
    429: "Too many failed sign-ins for this account or address; retry after `Retry-After` seconds.",
    503: "The database is unavailable.",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds until the next try", "schema": {"type": "integer"}}},
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with ErrorOut and its reason."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in sorted(codes):
        entry: dict[str, Any] = {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[code]}
        if code in _HEADERS:
            entry["headers"] = _HEADERS[code]
        responses[code] = entry
    return responses


# Every route can answer 422 (the input guard reads the address of any request).
ANY = (422,)
# A signed-in user's route: not signed in, or the token is invalid (401).
SIGNED_IN = (401, 422)
# A change (POST/PATCH) by a signed-in user: also refused without the CSRF token when sent
# with the session cookie (403), a body that cannot be parsed (400) or is over the size
# limit (413).
CHANGE = (400, 401, 403, 413, 422)
# An administrator's route.
ADMIN = (401, 403, 422)
