"""The one error type of the service and its JSON envelope ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.compat import PADDLEX_PATHS

REQUEST_ID = "request_id"
"""Key of the request id in the ASGI scope's ``state`` (set by ``RequestLogMiddleware``)."""
ARRIVED = "arrived"
"""Key of the request's arrival time (``time.monotonic()``) in the ASGI scope's ``state``."""


def arrived_at(scope: Mapping[str, Any]) -> float | None:
    """When the request arrived (``time.monotonic()``), if the middleware recorded it."""
    value = scope.get("state", {}).get(ARRIVED)
    return float(value) if value is not None else None


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


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def invalid_field(field: str, message: str) -> ServiceError:
    """422 for a request option with a bad value; the message names the field."""
    return ServiceError(422, "invalid_" + field, f"{field}: {message}", details={"field": field})


def too_large(code: str, message: str) -> ServiceError:
    return ServiceError(413, code, message)


def unprocessable(code: str, message: str) -> ServiceError:
    return ServiceError(422, code, message)


def request_id_of(scope: Mapping[str, Any]) -> str:
    """The id ``RequestLogMiddleware`` gave this request (also sent as ``X-Request-ID``)."""
    state = scope.get("state") or {}
    return str(state.get(REQUEST_ID) or uuid.uuid4().hex)


def error_payload(
    scope: Mapping[str, Any], status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON error body for this request: ours (``{"error": {"code", "message"}}``), or PaddleX's
    ``{logId, errorCode, errorMsg}`` (``errorCode`` = the HTTP status) on the PaddleX-compatible paths."""
    if scope.get("path") in PADDLEX_PATHS:
        return {"logId": request_id_of(scope), "errorCode": status, "errorMsg": message}
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}
