"""The one error type of the service and its JSON envelope ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An error with an HTTP status that is safe to show to the client.

    ``code`` is a stable machine-readable string, ``message`` a sentence for a person.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def invalid_field(field: str, message: str) -> ServiceError:
    """422 for a request option with a bad value; the message names the field."""
    return ServiceError(422, "invalid_" + field, f"{field}: {message}", details={"field": field})


def too_large(code: str, message: str) -> ServiceError:
    return ServiceError(413, code, message)


def unprocessable(code: str, message: str) -> ServiceError:
    return ServiceError(422, code, message)
