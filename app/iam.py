"""Cloud.ru IAM: a service account's access key (Key ID + Key Secret) exchanged for an access token.

Documented contract (cloud.ru docs, "Аутентификация в API"): ``POST https://iam.api.cloud.ru/api/v1/auth/token``
with JSON ``{"keyId": ..., "secret": ...}`` answers ``{"access_token", "id_token", "refresh_token",
"expires_in": 3600, "refresh_expires_in", "scopes", "token_type": "Bearer", "not_before"}``. The access token
goes in ``Authorization: Bearer <access_token>``; it lives ``expires_in`` seconds (an hour) and is then
replaced by a new exchange (the refresh token is empty).

Neutral ground between the two sides: used by the clients (:mod:`app.client.auth`) and by the paddleocr-vl engine
for its VLM server (:mod:`app.engines.paddleocr_vl.auth`). It imports nothing but ``httpx`` and the standard
library, so the client (``app/__init__.py``, this module and ``app/client/``) stays installable on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

DEFAULT_IAM_URL = "https://iam.api.cloud.ru/api/v1/auth/token"


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_in: float


class IamError(Exception):
    """No token: ``refused`` when IAM rejected the key pair (retrying with it will not help)."""

    def __init__(self, message: str, *, refused: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.refused = refused
        self.status = status


def refresh_margin(expires_in: float) -> float:
    """Seconds before expiry at which a token is replaced: a tenth of its life, at most five minutes."""
    return min(300.0, expires_in / 10)


def exchange(
    url: str, key_id: str, secret: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
) -> IssuedToken:
    """One exchange; :class:`IamError` says why it failed (never with the secret or a token)."""
    try:
        with httpx.Client(timeout=timeout, transport=transport) as http:
            response = http.post(url, json={"keyId": key_id, "secret": secret})
    except httpx.HTTPError as exc:
        raise IamError(f"IAM token service {url} unreachable: {type(exc).__name__}: {exc}", refused=False) from exc
    status = response.status_code
    if status in (400, 401, 403, 404):
        raise IamError(f"IAM refused the key pair (HTTP {status})", refused=True, status=status)
    if status != 200:
        detail = " ".join(response.text.split())[:200]
        raise IamError(f"IAM token service answered HTTP {status}: {detail}", refused=False, status=status)
    try:
        body = response.json()
        value, expires_in = body["access_token"], float(body.get("expires_in", 3600))
    except (ValueError, KeyError, TypeError) as exc:
        raise IamError("IAM token service answered without an access_token", refused=False) from exc
    if not isinstance(value, str) or not value:
        raise IamError("IAM token service answered with an empty access_token", refused=False)
    if expires_in <= 0:
        raise IamError(f"IAM token service answered expires_in={expires_in:g}", refused=False)
    return IssuedToken(value, expires_in)


class IamTokenCache:
    """A key pair and the one token last had for it, replaced :func:`refresh_margin` before it expires.

    The clients (:class:`app.client.auth.IamTokenSource`) and the VLM engine
    (:class:`app.engines.paddleocr_vl.auth.IamTokens`) build on it and decide what a failed exchange means for
    them. Subclasses hold ``_lock`` around ``_renew``-like code; the secret is kept out of ``repr`` and never logged.
    """

    #: Seconds one exchange may take when the caller gives no ``timeout``.
    default_timeout = 30.0

    def __init__(
        self,
        key_id: str,
        secret: str,
        url: str,
        *,
        timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.key_id = key_id
        self._secret = secret
        self.url = url
        self.timeout = self.default_timeout if timeout is None else timeout
        self.clock = clock
        self.transport = transport
        self._lock = threading.Lock()
        self._value: str | None = None
        self._issued_at = 0.0
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self.expires_in: float | None = None  # lifetime of the current token, as the IAM service gave it
        self.issued = 0  # tokens obtained so far

    def _exchange(self) -> IssuedToken:
        """One exchange for this key pair (:class:`IamError` when it fails)."""
        return exchange(self.url, self.key_id, self._secret, timeout=self.timeout, transport=self.transport)

    def _fresh(self) -> str | None:
        """The current token while it is not due for replacement, else ``None``."""
        value = self._value
        return value if value is not None and self.clock() < self._refresh_at else None

    def _keep(self, issued: IssuedToken) -> str:
        """Make ``issued`` the current token; returns its value."""
        now = self.clock()
        self._value, self._issued_at, self.expires_in = issued.value, now, issued.expires_in
        self._refresh_at = now + issued.expires_in - refresh_margin(issued.expires_in)
        self._expires_at = now + issued.expires_in
        self.issued += 1
        return issued.value
