"""The stateless side of the S3 mirror: settings check, boto3 client, key layout, one outbox step, error texts.

:mod:`app.storage.s3` holds the state (threads, backoff, health); what is here has none and is tested without
a server where it can be.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.storage.outbox import Item

log = logging.getLogger("app.storage.s3")

REQUIRED = ("CLOUDRU_S3_ENDPOINT", "CLOUDRU_S3_BUCKET", "CLOUDRU_S3_ACCESS_KEY", "CLOUDRU_S3_SECRET_KEY")
QUIET_LOGGERS = ("boto3", "botocore", "s3transfer", "urllib3")
_MESSAGE_LIMIT = 300
_CREDENTIAL_ERRORS = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403")
META_OWNER = "ocr-job-id"
"""User metadata (``x-amz-meta-ocr-job-id``) naming the job that wrote an owned object (see :class:`Item`)."""
META_VERSION = "ocr-version"
"""User metadata (``x-amz-meta-ocr-version``) ordering the writes of one owned key."""


def missing_settings(settings: Settings) -> list[str]:
    """Names of the four required variables that are empty."""
    values = {
        "CLOUDRU_S3_ENDPOINT": settings.cloudru_s3_endpoint,
        "CLOUDRU_S3_BUCKET": settings.cloudru_s3_bucket,
        "CLOUDRU_S3_ACCESS_KEY": settings.cloudru_s3_access_key.get_secret_value(),
        "CLOUDRU_S3_SECRET_KEY": settings.cloudru_s3_secret_key.get_secret_value(),
    }
    return [name for name in REQUIRED if not values[name]]


def content_type(name: str) -> str:
    """The Content-Type an object is stored with."""
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".md"):
        return "text/markdown; charset=utf-8"
    if name.endswith(".txt"):
        return "text/plain; charset=utf-8"
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


@dataclass(frozen=True)
class KeyLayout:
    """Where things go in the bucket (see :mod:`app.storage.s3`)."""

    prefix: str

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def job(self, job_id: str) -> str:
        return self.key(f"jobs/{job_id}/job.json")

    def page(self, job_id: str, number: int) -> str:
        return self.key(f"jobs/{job_id}/pages/{number:05d}.json")

    def result(self, result_dir: str, name: str = "") -> str:
        return self.key(f"{result_dir}/{name}") if name else self.key(result_dir)


def result_files(folder: Path) -> list[str]:
    """A result folder's files, relative to it, in upload order: images, ``result.md``, ``result.json`` last."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    names = [n for n in names if not Path(n).name.startswith(".")]  # temp files of atomic writes
    rank = {"result.md": 1, "result.json": 2}
    return sorted(names, key=lambda n: rank.get(n, 0))


def make_client(settings: Settings) -> Any:
    """The boto3 S3 client: SigV4, path-style, bounded timeouts, standard retries (3 tries in all).

    Checksums only "when_required": botocore >= 1.36 otherwise adds CRC32 trailers that S3-compatible
    stores, Cloud.ru's among them, may refuse. Its own session, so ``~/.aws`` profiles play no part.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        region_name=settings.cloudru_s3_region,
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=settings.s3_upload_concurrency + 4,
    )
    endpoint = settings.cloudru_s3_endpoint
    if "://" not in endpoint:
        endpoint = "https://" + endpoint
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=settings.cloudru_s3_access_key.get_secret_value(),
        aws_secret_access_key=settings.cloudru_s3_secret_key.get_secret_value(),
        region_name=settings.cloudru_s3_region,
        verify=settings.cloudru_s3_ca_bundle or None,
        config=config,
    )


def apply_step(client: Any, bucket: str, root: Path, item: Item, body: bytes | None) -> bool:
    """Carry out one outbox step: upload ``body`` (or the item's file under ``root``) or delete the key.

    An item with an ``owner`` is checked against the object's metadata first (one HEAD): an upload does not
    replace an object of a newer ``version``, a delete removes the object only while that owner wrote it.
    True when an object was uploaded; False when the step was skipped (its local file is gone, or the guard
    said no) or was a delete. Raises the client's errors.
    """
    if item.delete or item.owner:
        current = _head_metadata(client, bucket, item.key)
        if item.delete:
            if current is not None and (not item.owner or current.get(META_OWNER) == item.owner):
                client.delete_object(Bucket=bucket, Key=item.key)
            return False
        if current is not None and current.get(META_VERSION, "") > item.version:
            log.info("S3 mirror: %s holds a newer version; not replaced", item.key)
            return False
    if body is None:
        try:
            body = (root / item.file).read_bytes()
        except FileNotFoundError:
            log.warning("S3 mirror: %s no longer exists locally; skipped", item.file)
            return False
    extra: dict[str, Any] = {}
    if item.owner:
        extra["Metadata"] = {META_OWNER: item.owner, META_VERSION: item.version}
    client.put_object(Bucket=bucket, Key=item.key, Body=body, ContentType=item.content_type, **extra)
    return True


def _head_metadata(client: Any, bucket: str, key: str) -> dict[str, str] | None:
    """The object's user metadata; None when there is no such object."""
    try:
        response = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise
    metadata: dict[str, str] = response.get("Metadata") or {}
    return metadata


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


def is_not_found(exc: BaseException) -> bool:
    """Whether a client error says the object (or key) does not exist."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str((response.get("Error") or {}).get("Code", ""))
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in ("NoSuchKey", "404", "NotFound") or status == 404
