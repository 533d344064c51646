"""What engines raise when a page cannot be recognised. They know nothing of HTTP: the job runner turns
these into client errors through the one table in :mod:`app.errors` (:func:`app.errors.engine_failure`).

Every message is safe to show to a client: no host names, credentials or file paths.
"""

from __future__ import annotations


class EngineError(Exception):
    """A page (or batch of pages) the engine could not recognise, for a reason the client may be told."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PageTimeout(EngineError):
    """The engine gave up on a page after its time limit (``PAGE_TIMEOUT_S``)."""


class VlmTimeout(EngineError):
    """The VLM server did not answer within ``VL_REQUEST_TIMEOUT_S``."""


class VlmUnavailable(EngineError):
    """The VLM server cannot be reached (refused, reset, DNS)."""


class VlmFailed(EngineError):
    """The VLM server answered with an HTTP error status (kept in ``status_code``)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class VlmAuthFailed(EngineError):
    """No credential for the VLM server now (the IAM token could not be obtained; details in ``/health``)."""
