"""Service-layer errors. Each carries the HTTP status and a message a radiologist understands.

Routes let them propagate; create_app turns them into ``{"detail": message}`` responses.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    status_code = 422


class NotFound(ServiceError):
    status_code = 404


class Forbidden(ServiceError):
    status_code = 403


class Conflict(ServiceError):
    status_code = 409


class TooLarge(ServiceError):
    status_code = 413


class Unavailable(ServiceError):
    status_code = 503


class TooManyAttempts(ServiceError):
    """Refused for now; the answer carries ``Retry-After: retry_after_s``."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
