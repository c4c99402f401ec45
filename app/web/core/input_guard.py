"""Values no field may hold, refused before any route or database sees them.

- Control characters (NUL and the other C0 codes but tab, line feed and carriage return, and
  DEL): PostgreSQL refuses NUL in text, which turned a stray byte in a login form into a 500,
  and none of them belongs in a name, a note or a search.
- Ids beyond what the database integer holds (2³¹ − 1 on PostgreSQL): a 422 that says so,
  instead of an overflow inside the driver.
- Dates outside 1900–2100, and dates given as anything but YYYY-MM-DD (pydantic would read
  "0.0" as a Unix timestamp, 1970-01-01).

Query strings and url-encoded or JSON bodies are checked by ``ControlCharacterGuard``;
multipart uploads carry files (where any byte is fine), so their few text fields are checked
where they are parsed (app.web.services.uploads).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote

from fastapi import Path
from pydantic import BeforeValidator
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The largest id any table holds: PostgreSQL's INTEGER.
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a positive id")]
EARLIEST_YEAR, LATEST_YEAR = 1900, 2100
# Bodies of this size or less are checked; larger form or JSON bodies are not ours to read.
MAX_CHECKED_BODY_BYTES = 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CHECKED_TYPES = ("application/x-www-form-urlencoded", "application/json")

ErrorResponder = Callable[[Request, int, str], Response | Awaitable[Response]]


def control_character(text: str) -> str | None:
    """A description of the first control character in ``text`` ("NUL (0x00)"), or None."""
    match = _CONTROL.search(text)
    if match is None:
        return None
    code = ord(match.group())
    return "NUL (0x00)" if code == 0 else f"a control character (0x{code:02x})"


def control_character_message(field: str, text: str) -> str | None:
    found = control_character(text)
    if found is None:
        return None
    return f"{field} contains {found}, which no field may hold; remove it and try again"


def checked_date(value: Any) -> Any:
    """A pydantic BeforeValidator: YYYY-MM-DD only, year 1900–2100; None and dates pass."""
    if value is None or isinstance(value, date):
        candidate = value
    elif isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        candidate = date.fromisoformat(value.strip())
    else:
        raise ValueError("a date must be written YYYY-MM-DD, e.g. 2025-03-14")
    if candidate is not None and not EARLIEST_YEAR <= candidate.year <= LATEST_YEAR:
        raise ValueError(f"a date must lie between {EARLIEST_YEAR} and {LATEST_YEAR}")
    return candidate


IsoDate = Annotated[date, BeforeValidator(checked_date)]


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every (place, string) of a decoded JSON document, keys included."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{where}.{key}" if where else str(key), str(key)
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


def body_problem(content_type: str, body: bytes) -> str | None:
    """Why a url-encoded or JSON body is refused, or None."""
    text = body.decode("utf-8", errors="replace")
    if content_type.startswith("application/x-www-form-urlencoded"):
        pairs = parse_qsl(text, keep_blank_values=True)
        places = [item for name, value in pairs for item in ((name, name), (name, value))]
    else:
        try:
            places = list(_strings(json.loads(text), ""))
        except ValueError:
            return None  # not JSON: the route's own validation answers that
    for field, value in places:
        message = control_character_message(f"the field '{field or 'body'}'", value)
        if message:
            return message
    return None


class ControlCharacterGuard:
    """Refuses (422) a request whose path, query or small form/JSON body holds a control character."""

    def __init__(self, app: ASGIApp, respond: ErrorResponder) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = unquote(scope.get("query_string", b"").decode("latin-1"))
        problem = control_character_message("the address", scope["path"] + "?" + query)
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        length = headers.get(b"content-length", b"")
        replay: list[Message] = []
        small = length.isdigit() and int(length) <= MAX_CHECKED_BODY_BYTES
        if problem is None and content_type.startswith(_CHECKED_TYPES) and small:
            body = b""
            while True:
                message = await receive()
                replay.append(message)
                if message["type"] != "http.request":
                    break
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
            problem = body_problem(content_type, body)
        if problem is not None:
            response = self.respond(Request(scope), 422, problem)
            if not isinstance(response, Response):
                response = await response
            await response(scope, receive, send)
            return

        async def replaying_receive() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replaying_receive, send)
