"""The one error type of the service and its JSON envelope ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from app.compat import PADDLEX_PATHS
from app.engines.errors import EngineError, PageTimeout, VlmAuthFailed, VlmFailed, VlmTimeout, VlmUnavailable

log = logging.getLogger(__name__)

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


#: Engine exceptions -> (HTTP status, code, Retry-After seconds): the one place an engine's failure becomes
#: an HTTP answer. A subclass of a listed exception maps as its nearest listed base does.
ENGINE_ERRORS: dict[type[EngineError], tuple[int, str, str | None]] = {
    PageTimeout: (504, "page_timeout", None),
    VlmTimeout: (504, "vlm_timeout", "30"),
    VlmUnavailable: (502, "vlm_unavailable", "10"),
    VlmFailed: (502, "vlm_error", None),
    VlmAuthFailed: (502, "vlm_auth", "60"),
    EngineError: (500, "ocr_failed", None),
}


def engine_failure(exc: BaseException, pages: Sequence[int], engine: str) -> ServiceError:
    """The client's error for ``exc``, raised by ``engine`` on ``pages`` (one engine call).

    An :class:`EngineError` maps through :data:`ENGINE_ERRORS` with its own (client-safe) message; a
    :class:`ServiceError` is kept as it is; anything else is an unexpected failure: logged, and answered
    with 500 ``ocr_failed`` naming only the exception's type.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, EngineError):
        status, code, retry_after = next(ENGINE_ERRORS[k] for k in type(exc).__mro__ if k in ENGINE_ERRORS)
        return ServiceError(status, code, exc.message, headers={"Retry-After": retry_after} if retry_after else None)
    log.error("pages %s failed in %s: %r", list(pages), engine, exc)
    where = f"page {pages[0]}" if len(pages) == 1 else f"page {pages[0]}-{pages[-1]}"
    return ServiceError(500, "ocr_failed", f"the OCR engine failed on {where}: {type(exc).__name__}")


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
