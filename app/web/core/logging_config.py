"""uvicorn's logging with app.logsafe's rules: no exception messages, no query-string values.

`fetalcns serve` passes ``uvicorn_log_config()`` to uvicorn; `uvicorn app.main:app` users can
pass the same dict (or `--log-config` a file made from it).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

from app.logsafe import PrivateExceptions, PrivateJsonFormatter, json_logs_requested, redact_query

# uvicorn's access records carry (client, method, path with query, HTTP version, status).
_ACCESS_ARGS = 5
_PATH = 2


class PrivateDefaultFormatter(PrivateExceptions, DefaultFormatter):
    """uvicorn's server and error log, with redacted exceptions."""


class PrivateAccessFormatter(PrivateExceptions, AccessFormatter):
    """uvicorn's access log with each query value replaced by '…'."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and len(args) == _ACCESS_ARGS:
            redacted = list(args)
            redacted[_PATH] = redact_query(str(args[_PATH]))
            record = logging.makeLogRecord({**record.__dict__, "args": tuple(redacted)})
        return super().formatMessage(record)


class PrivateJsonAccessFormatter(PrivateJsonFormatter):
    """uvicorn's access log as JSON fields, each query value replaced by '…'."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        args = record.args
        if not (isinstance(args, tuple) and len(args) == _ACCESS_ARGS):
            return super().fields(record)
        client, method, path, version, status = args
        path = redact_query(str(path))
        return {
            "message": f"{method} {path} {status}",
            "client": str(client),
            "method": str(method),
            "path": path,
            "http_version": str(version),
            "status": int(status),  # type: ignore[call-overload]
        }


def uvicorn_log_config(level: str = "INFO", json_logs: bool | None = None) -> dict[str, Any]:
    """uvicorn's default configuration with the private formatters, plus the app's own loggers;
    JSON lines when ``json_logs`` (default: FETALCNS_LOG_FORMAT=json)."""
    if json_logs if json_logs is not None else json_logs_requested():
        formatters: dict[str, Any] = {
            "default": {"()": f"{PrivateJsonFormatter.__module__}.PrivateJsonFormatter"},
            "access": {"()": f"{__name__}.PrivateJsonAccessFormatter"},
        }
    else:
        formatters = {
            "default": {
                "()": f"{__name__}.PrivateDefaultFormatter",
                "fmt": "%(levelprefix)s %(name)s: %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": f"{__name__}.PrivateAccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
        },
        # The app's own loggers (and libraries') reach the same private handler.
        "root": {"handlers": ["default"], "level": level},
    }
