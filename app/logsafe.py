"""Log lines without patient data, exceptions included.

An exception's message can quote anything: SQL parameters (a patient's name and ID on an
INSERT), a database's error detail ("Key (patient_id)=(...) already exists"), a DICOM value.
So a logged exception keeps its type and where it happened (file, line, function: code, not
data) and loses its message, for every exception in the chain. Query strings of logged
requests keep their parameter names and lose their values (a worklist search is a name).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

WITHHELD = "(message withheld: it may contain patient data)"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes, oldest first, as Python prints them."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain[::-1]


def redacted_traceback(exc: BaseException) -> str:
    """Each exception of the chain as 'Traceback' + its frames + its qualified type name."""
    parts: list[str] = []
    for index, item in enumerate(_chain(exc)):
        if index:
            parts.append("\nThe above exception led to the following exception:\n\n")
        frames = traceback.extract_tb(item.__traceback__)
        if frames:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n' for f in frames)
        kind = type(item)
        parts.append(f"{kind.__module__}.{kind.__qualname__} {WITHHELD}\n")
    return "".join(parts).rstrip("\n")


def redact_query(target: str) -> str:
    """'/path?q=Doe&label=normal' → '/path?q=…&label=…'."""
    split = urlsplit(target)
    if not split.query:
        return target
    names = "&".join(f"{name}=…" for name, _ in parse_qsl(split.query, keep_blank_values=True))
    return f"{split.path}?{names}"


class PrivateExceptions:
    """Mixin for any logging.Formatter: exceptions are written by ``redacted_traceback``."""

    def formatException(self, ei: Any) -> str:
        return redacted_traceback(ei[1]) if ei and ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        # Another handler's formatter may have cached the full traceback on the record.
        copy = logging.makeLogRecord(record.__dict__)
        copy.exc_text = None
        return super().format(copy)  # type: ignore[misc]


class PrivateFormatter(PrivateExceptions, logging.Formatter):
    """A plain Formatter whose exceptions carry no messages."""


class PrivateJsonFormatter(logging.Formatter):
    """One JSON object per line (time, level, logger, message and, for an exception, its
    redacted traceback), for log collectors; the same rules as PrivateFormatter."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return {"message": record.getMessage()}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            **self.fields(record),
        }
        if record.exc_info and record.exc_info[1] is not None:
            payload["exception"] = redacted_traceback(record.exc_info[1])
        return json.dumps(payload, ensure_ascii=False)


def json_logs_requested() -> bool:
    """``FETALCNS_LOG_FORMAT=json`` (read before any settings: logging starts first)."""
    return os.environ.get("FETALCNS_LOG_FORMAT", "text").strip().lower() == "json"


def install_private_logging(level: int = logging.INFO) -> None:
    """Root logging to stderr through PrivateFormatter, or PrivateJsonFormatter with
    FETALCNS_LOG_FORMAT=json (the `fetalcns` command's setup)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrivateJsonFormatter() if json_logs_requested() else PrivateFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
