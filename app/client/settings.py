"""Settings of the client programs (batch client, deployment check), read from the environment and ``.env``.

These are the caller's variables, not the service's: the service never reads them, so they are documented
in README.md and the deployment guide rather than in ML_INFERENCE_ENV_VARS.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.iam import DEFAULT_IAM_URL

AuthMode = Literal["iam", "token", "none"]


class ClientSettings(BaseSettings):
    """Where the deployment is and how to authenticate to it.

    Two layers of auth can be on at once: the platform's (a Docker RUN with authentication on wants
    ``Authorization: Bearer <IAM token>``: a key pair to exchange, or a ready token) and the service's own
    ``API_KEY`` (sent as ``X-API-Key`` so that it never competes with the platform's header).
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    cloud_ru_inference_url: str = ""
    cloud_ru_iam_key_id: str = ""
    cloud_ru_iam_secret: SecretStr | None = None
    cloud_ru_token: SecretStr | None = None
    cloud_ru_iam_url: str = DEFAULT_IAM_URL
    service_api_key: SecretStr | None = None

    @field_validator("cloud_ru_iam_secret", "cloud_ru_token", "service_api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cloud_ru_inference_url", "cloud_ru_iam_key_id", "cloud_ru_iam_url", mode="after")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @property
    def auth_mode(self) -> AuthMode:
        """``iam`` with a key pair (preferred over a ready token when both are set), ``token``, or ``none``."""
        if self.cloud_ru_iam_key_id and self.cloud_ru_iam_secret is not None:
            return "iam"
        if self.cloud_ru_token is not None:
            return "token"
        return "none"

    def problems(self) -> list[str]:
        """What is missing or inconsistent, as messages naming the variables; empty when usable."""
        found = []
        url = self.cloud_ru_inference_url
        if not url:
            found.append("CLOUD_RU_INFERENCE_URL is not set (e.g. https://<docker_run_id>.modelrun.inference.cloud.ru)")
        elif not url.startswith(("http://", "https://")):
            found.append(f"CLOUD_RU_INFERENCE_URL must start with http:// or https://, got {url[:60]!r}")
        if bool(self.cloud_ru_iam_key_id) != (self.cloud_ru_iam_secret is not None):
            found.append("set both CLOUD_RU_IAM_KEY_ID and CLOUD_RU_IAM_SECRET, or neither")
        if not self.cloud_ru_iam_url.startswith(("http://", "https://")):
            found.append("CLOUD_RU_IAM_URL must be an http(s) URL")
        return found


def load_settings(env_file: Path | None = None, url: str | None = None) -> ClientSettings:
    """Settings from the environment, then ``env_file`` (default ``./.env``) for what the environment lacks."""
    settings = ClientSettings(_env_file=env_file or Path(".env"))
    return settings.model_copy(update={"cloud_ru_inference_url": url.strip()}) if url else settings


def mask(value: str | SecretStr | None, keep: int = 0) -> str:
    """A value fit for printing: ``(not set)``, or its length and at most its first ``keep`` characters.

    Secrets use ``keep=0``; identifiers such as a key id may show a short prefix (only when it is at most
    a quarter of the value).
    """
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text:
        return "(not set)"
    shown = text[:keep] if keep and len(text) >= keep * 4 else ""
    return f"{shown}***({len(text)} chars)"
