"""S3 errors as the rest of the service sees them, and the botocore error shapes (known only in this package)."""

from __future__ import annotations

_MESSAGE_LIMIT = 300
_CREDENTIAL_ERRORS = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403")


class S3Unavailable(Exception):
    """S3 could not be read or written; the message is safe to show (no secrets)."""


class Conflict(Exception):
    """A conditional write or delete lost: the object exists (``put_if_absent``), or it changed or is gone
    (``put_if_match``, ``delete_if_match``)."""


def error_code(exc: BaseException) -> tuple[str, int | None]:
    """S3's error code and HTTP status of a botocore error (``("", None)`` for other errors)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return "", None
    code = str((response.get("Error") or {}).get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def is_not_found(exc: BaseException) -> bool:
    code, status = error_code(exc)
    return code in ("NoSuchKey", "404", "NotFound") or status == 404


def is_precondition_failed(exc: BaseException) -> bool:
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""
    code, status = error_code(exc)
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status in (409, 412)


def describe_error(exc: BaseException, secrets: list[str]) -> dict[str, str]:
    """``{"type", "message"}`` of an error with the ``secrets`` removed, for /health and the logs."""
    message = str(exc)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code, text = error.get("Code"), error.get("Message")
        if code:
            message = f"{code}: {text}" if text else str(code)
        if code in _CREDENTIAL_ERRORS:
            message += " (check CLOUDRU_S3_ACCESS_KEY and CLOUDRU_S3_SECRET_KEY)"
    for secret in secrets:
        message = message.replace(secret, "***")
    return {"type": type(exc).__name__, "message": message[:_MESSAGE_LIMIT]}
