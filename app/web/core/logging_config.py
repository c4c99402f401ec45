"""uvicorn's logging with app.logsafe's rules: no exception messages, no query-string values.

`fetalcns serve` passes ``uvicorn_log_config()`` to uvicorn; `uvicorn app.main:app` users can
pass the same dict (or `--log-config` a file made from it).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

from app.logsafe import PrivateExceptions, redact_query

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


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's default configuration with the private formatters, plus the app's own loggers."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "default": {
                "()": f"{__name__}.PrivateDefaultFormatter",
                "fmt": "%(levelprefix)s %(name)s: %(message)s",
                "use_colors": None,
            },
            "access": {
                "()": f"{__name__}.PrivateAccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
            },
        },
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
