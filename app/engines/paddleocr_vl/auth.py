"""The bearer credential for the VLM server: none, a static key (``VL_API_KEY``), or Cloud.ru IAM access
tokens (``VL_IAM_KEY_ID`` + ``VL_IAM_SECRET``, exchanged at ``VL_IAM_URL``; see :mod:`app.iam`).

IAM tokens live an hour. :class:`IamTokens` caches one, replaces it shortly before it expires and, after the
server answers 401, once more (only if that token is not brand new: a fresh token refused means the service
account has no access, and another exchange would not help). A failed exchange is not retried before a
backoff (1, 2, 4 ... 60 s): requests meanwhile fail at once with :class:`VlmAuthError`, so a wrong secret
costs one IAM call a minute, not one per page. Tokens and the secret never reach logs or ``/health``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from app.engines.paddleocr_vl.status import TokenState
from app.iam import IamError, IamTokenCache
from app.settings import Settings

log = logging.getLogger("app.engines.paddleocr_vl")  # one name for the whole engine (the guide quotes it)

#: Seconds between failed exchanges: 1, 2, 4, ... up to this.
RETRY_CAP_S = 60.0


class VlmAuthError(RuntimeError):
    """No token for the VLM server; the message says why and what to fix. ``refused``: IAM rejected the key."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


class VlmCredentials:
    """No credential: requests go without ``Authorization`` (openai's placeholder is left as it is)."""

    mode = "none"
    refreshable = False

    def cached(self) -> str | None:
        """The bearer value to send now without any I/O; ``None``: none (or, when refreshable, call :meth:`token`)."""
        return None

    def token(self) -> str | None:
        """The bearer value, exchanging for a new one if due (blocking). Raises :class:`VlmAuthError`."""
        return self.cached()

    def renew_after_rejection(self, rejected: str | None) -> str | None:
        """After a 401 to ``rejected``: a token worth one more try, or ``None`` (answer the 401 as it is)."""
        return None

    def state(self) -> TokenState:
        return TokenState(mode="none")


class StaticKey(VlmCredentials):
    """``VL_API_KEY``: a key that does not expire (vLLM's ``--api-key``, a Cloud.ru API key)."""

    mode = "api_key"

    def __init__(self, key: str) -> None:
        self._key = key

    def cached(self) -> str:
        return self._key

    def state(self) -> TokenState:
        return TokenState(mode="api_key")


class IamTokens(IamTokenCache, VlmCredentials):
    """Cloud.ru IAM access tokens, cached and renewed (see the module docstring). Thread-safe."""

    mode = "iam"
    refreshable = True

    default_timeout = 10.0
    # What the renewals went through (each instance sets its own as they happen).
    _failures = 0
    _retry_at = 0.0
    _error: VlmAuthError | None = None
    _valid_until: str | None = None
    _renewed_at: str | None = None
    _last_error: str | None = None
    _last_error_at: str | None = None

    @property
    def renewals(self) -> int:
        """Tokens obtained so far."""
        return self.issued

    def cached(self) -> str | None:
        return self._fresh()

    def token(self) -> str:
        with self._lock:
            return self._fresh() or self._renew()

    def renew_after_rejection(self, rejected: str | None) -> str | None:
        with self._lock:
            now = self.clock()
            if self._value is not None and self._value != rejected and now < self._refresh_at:
                return self._value  # another request has renewed it already
            if self._value == rejected and now - self._issued_at < min(5.0, (self._expires_at - self._issued_at) / 10):
                return None  # refused while brand new: not an expiry
            self._value = None
            return self._renew()

    def _renew(self) -> str:
        """Exchange the key for a token (lock held). Within the backoff after a failure, no IAM call."""
        now = self.clock()
        if self._error is not None and now < self._retry_at:
            if self._value is not None and now < self._expires_at:
                return self._value  # the old token still works for a while
            raise self._error
        try:
            issued = self._exchange()
        except IamError as exc:
            self._failures += 1
            wait = min(RETRY_CAP_S, 2.0 ** (self._failures - 1))
            self._retry_at = self.clock() + wait
            self._error = VlmAuthError(self._explain(exc), refused=exc.refused)
            self._last_error, self._last_error_at = str(self._error), _utc(time.time())
            log.warning("paddleocr-vl: no IAM token for the VLM server: %s (next try in %.0f s)", self._error, wait)
            if self._value is not None and now < self._expires_at:
                return self._value
            raise self._error from exc
        self._failures, self._error = 0, None
        self._renewed_at, self._valid_until = _utc(time.time()), _utc(time.time() + issued.expires_in)
        log.info("paddleocr-vl: IAM token for the VLM server obtained, valid %.0f s", issued.expires_in)
        return self._keep(issued)

    @staticmethod
    def _explain(exc: IamError) -> str:
        if exc.refused:
            return (
                f"{exc}: check VL_IAM_KEY_ID and VL_IAM_SECRET (the Key ID and Key Secret of a service account's "
                "access key, still valid) and VL_IAM_URL"
            )
        return str(exc)

    def state(self) -> TokenState:
        with self._lock:
            return TokenState(
                mode="iam",
                valid_until=self._valid_until,
                renewed_at=self._renewed_at,
                renewals=self.renewals,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
            )


def credentials_for(settings: Settings) -> VlmCredentials:
    """The credential the settings ask for (:func:`.config.check_settings` allows one at most)."""
    s = settings
    if s.vl_iam_key_id and s.vl_iam_secret.get_secret_value():
        return IamTokens(s.vl_iam_key_id, s.vl_iam_secret.get_secret_value(), s.vl_iam_url)
    if s.vl_api_key.get_secret_value():
        return StaticKey(s.vl_api_key.get_secret_value())
    return VlmCredentials()


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")
