"""Authentication to a deployment: Cloud.ru IAM tokens (exchanged and refreshed) and the service's API key.

The key pair is exchanged at ``CLOUD_RU_IAM_URL`` (the contract: :mod:`app.iam`). The platform in front of
a Docker RUN (or a Model RUN) with authentication on wants ``Authorization: Bearer <access_token>``. The service's
own ``API_KEY`` goes in ``X-API-Key``, so both layers work together.
"""

from __future__ import annotations

from collections.abc import Generator

import httpx

from app.client.settings import ClientSettings
from app.iam import IamError, IamTokenCache, IssuedToken


class AuthError(Exception):
    """The token could not be had: the key pair was refused or the token service did not answer usably."""


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


class IamTokenSource(IamTokenCache, TokenSource):
    """Exchanges a key pair for an IAM token and replaces it shortly before it expires. Thread-safe."""

    refreshable = True

    def fetch(self) -> IssuedToken:
        """One exchange with the IAM service; :class:`AuthError` with the reason when it fails."""
        try:
            return self._exchange()
        except IamError as exc:
            if exc.refused:
                raise AuthError(
                    f"{exc}: check CLOUD_RU_IAM_KEY_ID and CLOUD_RU_IAM_SECRET (a service account access key) "
                    "and CLOUD_RU_IAM_URL"
                ) from exc
            raise AuthError(str(exc)) from exc

    def token(self) -> str:
        with self._lock:
            return self._fresh() or self._keep(self.fetch())

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
