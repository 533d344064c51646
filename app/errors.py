"""The service's errors: what went wrong, as the client may be told, without HTTP.

Every error a client may see is a :class:`ServiceError`: a stable machine-readable ``code``, a ``message`` for a
person, optionally ``retry_after`` (seconds) and ``details``. Its class says what kind of failure it is
(:class:`Invalid`, :class:`Unavailable`, ...); only the API layer turns kinds into HTTP statuses and the JSON
envelope (:mod:`app.api.errors`). Engines raise their own errors (:mod:`app.engines.errors`); the job runner turns
them into service errors here (:func:`engine_failure`), through the one table :data:`ENGINE_ERRORS`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from app.engines.errors import EngineError, PageTimeout, VlmAuthFailed, VlmFailed, VlmTimeout, VlmUnavailable

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error that is safe to show to the client. Subclasses say what kind it is."""

    def __init__(
        self, code: str, message: str, *, retry_after: float | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details = details or {}

    @property
    def kind(self) -> str:
        """The kind's name as stored with a job's error (``invalid``, ``unavailable``, ...)."""
        return next((KIND_NAMES[k] for k in type(self).__mro__ if k in KIND_NAMES), "internal")


class BadRequest(ServiceError):
    """The request cannot be read as sent (no document, several, a refused URL)."""


class Unauthorized(ServiceError):
    """The request lacks the service's key."""


class NotFound(ServiceError):
    """No such job, page, ..."""


class StateConflict(ServiceError):
    """Not in this state: a job that is still running, cancelled, already finished."""


class Gone(ServiceError):
    """It existed and is no longer kept (an expired job, a deleted document)."""


class TooLarge(ServiceError):
    """Over a size limit (the upload, a field, a page)."""


class Unsupported(ServiceError):
    """A type of document or body the service does not read."""


class Invalid(ServiceError):
    """Readable, but wrong: an option's value, a corrupt document, a language that is not installed."""


class Busy(ServiceError):
    """The queue is full; ``retry_after`` says when it has room."""


class Internal(ServiceError):
    """An unexpected failure (the service's own fault)."""


class UpstreamFailed(ServiceError):
    """A server this one relies on (the VLM, a URL's host) failed."""


class Unavailable(ServiceError):
    """Not now: starting, stopping, the engine or the shared storage unavailable."""


class TimedOut(ServiceError):
    """Took longer than its limit (a page, the VLM, a URL, a synchronous request)."""


class OutOfSpace(ServiceError):
    """The service's disk is full or not writable."""


KINDS: tuple[type[ServiceError], ...] = (
    BadRequest,
    Unauthorized,
    NotFound,
    StateConflict,
    Gone,
    TooLarge,
    Unsupported,
    Invalid,
    Busy,
    Internal,
    UpstreamFailed,
    Unavailable,
    TimedOut,
    OutOfSpace,
)
KIND_NAMES: dict[type[ServiceError], str] = {
    BadRequest: "bad_request",
    Unauthorized: "unauthorized",
    NotFound: "not_found",
    StateConflict: "conflict",
    Gone: "gone",
    TooLarge: "too_large",
    Unsupported: "unsupported",
    Invalid: "invalid",
    Busy: "busy",
    Internal: "internal",
    UpstreamFailed: "upstream_failed",
    Unavailable: "unavailable",
    TimedOut: "timed_out",
    OutOfSpace: "out_of_space",
}
KIND_OF_NAME: dict[str, type[ServiceError]] = {name: kind for kind, name in KIND_NAMES.items()}


def error_of(kind: str, code: str, message: str) -> ServiceError:
    """A service error of the kind named ``kind`` (as stored with a job's error; unknown names are internal)."""
    return KIND_OF_NAME.get(kind, Internal)(code, message)


#: Engine exceptions -> (kind, code, retry after s): the one place an engine's failure becomes a service error.
#: A subclass of a listed exception maps as its nearest listed base does.
ENGINE_ERRORS: dict[type[EngineError], tuple[type[ServiceError], str, float | None]] = {
    PageTimeout: (TimedOut, "page_timeout", None),
    VlmTimeout: (TimedOut, "vlm_timeout", 30),
    VlmUnavailable: (UpstreamFailed, "vlm_unavailable", 10),
    VlmFailed: (UpstreamFailed, "vlm_error", None),
    VlmAuthFailed: (UpstreamFailed, "vlm_auth", 60),
    EngineError: (Internal, "ocr_failed", None),
}


def engine_failure(exc: BaseException, pages: Sequence[int], engine: str) -> ServiceError:
    """The client's error for ``exc``, raised by ``engine`` on ``pages`` (one engine call).

    An :class:`EngineError` maps through :data:`ENGINE_ERRORS` with its own (client-safe) message; a
    :class:`ServiceError` is kept as it is; anything else is an unexpected failure: logged, and reported as
    ``ocr_failed`` naming only the exception's type.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, EngineError):
        kind, code, retry_after = next(ENGINE_ERRORS[k] for k in type(exc).__mro__ if k in ENGINE_ERRORS)
        return kind(code, exc.message, retry_after=retry_after)
    log.error("pages %s failed in %s: %r", list(pages), engine, exc)
    where = f"page {pages[0]}" if len(pages) == 1 else f"page {pages[0]}-{pages[-1]}"
    return Internal("ocr_failed", f"the OCR engine failed on {where}: {type(exc).__name__}")


def bad_request(code: str, message: str) -> ServiceError:
    return BadRequest(code, message)


def invalid_field(field: str, message: str) -> ServiceError:
    """A request option with a bad value; the message names the field."""
    return Invalid("invalid_" + field, f"{field}: {message}", details={"field": field})


def too_large(code: str, message: str) -> ServiceError:
    return TooLarge(code, message)


def unprocessable(code: str, message: str) -> ServiceError:
    return Invalid(code, message)
