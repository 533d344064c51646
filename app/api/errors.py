"""Errors as HTTP answers: the one map from a service error's kind to its status, and the JSON envelope
``{"error": {"code", "message", "details"}}`` (PaddleX's ``{logId, errorCode, errorMsg}`` on its paths)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from app.compat import PADDLEX_PATHS
from app.errors import (
    BadRequest,
    Busy,
    Gone,
    Internal,
    Invalid,
    NotFound,
    OutOfSpace,
    ServiceError,
    StateConflict,
    TimedOut,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unsupported,
    UpstreamFailed,
)

HTTP_STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    StateConflict: 409,
    Gone: 410,
    TooLarge: 413,
    Unsupported: 415,
    Invalid: 422,
    Busy: 429,
    Internal: 500,
    UpstreamFailed: 502,
    Unavailable: 503,
    TimedOut: 504,
    OutOfSpace: 507,
}

REQUEST_ID = "request_id"
"""Key of the request id in the ASGI scope's ``state`` (set by ``RequestLogMiddleware``)."""
ARRIVED = "arrived"
"""Key of the request's arrival time (``time.monotonic()``) in the ASGI scope's ``state``."""


def http_status(error: ServiceError) -> int:
    """The HTTP status of ``error``: its kind's, or the nearest kind it derives from."""
    return next((HTTP_STATUS[k] for k in type(error).__mro__ if k in HTTP_STATUS), 500)


def http_headers(error: ServiceError) -> dict[str, str]:
    """``Retry-After`` (whole seconds) when the error says when to try again."""
    if error.retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}


def arrived_at(scope: Mapping[str, Any]) -> float | None:
    """When the request arrived (``time.monotonic()``), if the middleware recorded it."""
    value = scope.get("state", {}).get(ARRIVED)
    return float(value) if value is not None else None


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
