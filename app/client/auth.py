"""Authentication to a deployment: Cloud.ru IAM tokens (exchanged and refreshed) and the service's API key.

Cloud.ru IAM contract: ``POST <CLOUD_RU_IAM_URL>`` with JSON ``{"keyId": ..., "secret": ...}`` answers
``{"access_token": ..., "expires_in": <seconds>, ...}``; a wrong key pair gets 401/403. The platform in front of
a Model RUN with authentication on wants ``Authorization: Bearer <access_token>``. The service's own ``API_KEY``
goes in ``X-API-Key``, so both layers work together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from app.client.settings import ClientSettings

Clock = Callable[[], float]


class AuthError(Exception):
    """The token could not be had: the key pair was refused or the token service did not answer usably."""


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_in: float


def refresh_margin(expires_in: float) -> float:
    """Seconds before expiry at which a token is replaced: a tenth of its life, at most five minutes."""
    return min(300.0, expires_in / 10)


class TokenSource:
    """Gives the bearer token to send, or ``None`` when the platform needs none."""

    refreshable = False

    def token(self) -> str | None:
        return None

    def invalidate(self) -> None:
        """Forget the current token (after a 401), so that the next call gets a fresh one if it can."""


class StaticToken(TokenSource):
    """A ready IAM token or a service account's API key (``CLOUD_RU_TOKEN``): sent as is, never refreshed."""

    def __init__(self, value: str) -> None:
        self.value = value

    def token(self) -> str:
        return self.value


class IamTokenSource(TokenSource):
    """Exchanges a key pair for an IAM token and replaces it shortly before it expires. Thread-safe."""

    refreshable = True

    def __init__(
        self,
        key_id: str,
        secret: str,
        url: str,
        *,
        timeout: float = 30.0,
        clock: Clock = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.key_id = key_id
        self._secret = secret
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.transport = transport
        self._lock = threading.Lock()
        self._value: str | None = None
        self._refresh_at = 0.0
        self.issued = 0  # tokens obtained so far
        self.expires_in: float | None = None  # lifetime of the current token, as the IAM service gave it

    def fetch(self) -> IssuedToken:
        """One exchange with the IAM service; :class:`AuthError` with the reason when it fails."""
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as http:
                response = http.post(self.url, json={"keyId": self.key_id, "secret": self._secret})
        except httpx.HTTPError as exc:
            raise AuthError(f"IAM token service {self.url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code in (400, 401, 403, 404):
            raise AuthError(
                f"IAM refused the key pair (HTTP {response.status_code}): check CLOUD_RU_IAM_KEY_ID and "
                "CLOUD_RU_IAM_SECRET (a service account access key) and CLOUD_RU_IAM_URL"
            )
        if response.status_code != 200:
            raise AuthError(f"IAM token service answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            value, expires_in = body["access_token"], float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError("IAM token service answered without an access_token") from exc
        if not isinstance(value, str) or not value:
            raise AuthError("IAM token service answered with an empty access_token")
        return IssuedToken(value, expires_in)

    def token(self) -> str:
        with self._lock:
            if self._value is None or self.clock() >= self._refresh_at:
                issued = self.fetch()
                self._value, self.expires_in = issued.value, issued.expires_in
                self._refresh_at = self.clock() + issued.expires_in - refresh_margin(issued.expires_in)
                self.issued += 1
            return self._value

    def invalidate(self) -> None:
        with self._lock:
            self._value = None


class ServiceAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <platform token>`` and ``X-API-Key: <service key>`` to every request.

    On a 401 with a refreshable token it fetches a new token once and repeats the request.
    """

    requires_request_body = True  # so that a request can be sent again after a refresh

    def __init__(self, tokens: TokenSource, service_key: str | None = None) -> None:
        self.tokens = tokens
        self.service_key = service_key

    def _apply(self, request: httpx.Request) -> None:
        token = self.tokens.token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        if self.service_key:
            request.headers["X-API-Key"] = self.service_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._apply(request)
        response = yield request
        if response.status_code == 401 and self.tokens.refreshable:
            self.tokens.invalidate()
            self._apply(request)
            yield request


def token_source(settings: ClientSettings, timeout: float = 30.0) -> TokenSource:
    """The token source the settings ask for (see :attr:`ClientSettings.auth_mode`)."""
    mode = settings.auth_mode
    if mode == "iam" and settings.cloud_ru_iam_secret is not None:
        return IamTokenSource(
            settings.cloud_ru_iam_key_id,
            settings.cloud_ru_iam_secret.get_secret_value(),
            settings.cloud_ru_iam_url,
            timeout=timeout,
        )
    if mode == "token" and settings.cloud_ru_token is not None:
        return StaticToken(settings.cloud_ru_token.get_secret_value())
    return TokenSource()


def service_auth(settings: ClientSettings, tokens: TokenSource | None = None) -> ServiceAuth:
    key = settings.service_api_key.get_secret_value() if settings.service_api_key else None
    return ServiceAuth(tokens or token_source(settings), key)
