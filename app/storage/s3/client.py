"""The S3 connection (Cloud.ru Object Storage): settings check, the boto3 client, content types, outbox steps.

On only when ``CLOUDRU_S3_ENDPOINT``, ``CLOUDRU_S3_BUCKET``, ``CLOUDRU_S3_ACCESS_KEY`` and ``CLOUDRU_S3_SECRET_KEY``
are all set. Where things go in the bucket: :mod:`app.storage.s3.keys`. Errors: :mod:`app.storage.s3.errors`.

Secrets: the keys are ``SecretStr`` and go to boto3 only; :func:`~app.storage.s3.errors.describe_error` removes both
key values from error text shown in ``/health`` and logs.
"""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.storage.s3.errors import is_not_found
from app.storage.s3.outbox import Item

REQUIRED = ("CLOUDRU_S3_ENDPOINT", "CLOUDRU_S3_BUCKET", "CLOUDRU_S3_ACCESS_KEY", "CLOUDRU_S3_SECRET_KEY")
QUIET_LOGGERS = ("boto3", "botocore", "s3transfer", "urllib3")
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


def s3_enabled(settings: Settings) -> bool:
    """All four required variables are set; when only some are, the missing *names* are logged once."""
    for name in QUIET_LOGGERS:  # at DEBUG they would print signed request headers
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).getEffectiveLevel()))
    log = logging.getLogger("app.storage.s3")
    missing = missing_settings(settings)
    if len(missing) == len(REQUIRED):
        log.info("S3 mirror not configured: results are stored on local disk only")
        return False
    if missing:
        log.warning(
            "S3 mirror disabled: %s not set (the other S3 variables are); results are stored on local disk only",
            ", ".join(missing),
        )
        return False
    return True


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


def make_client(settings: Settings, read_timeout: float | None = None) -> Any:
    """The boto3 S3 client: SigV4, path-style, bounded timeouts, standard retries (3 tries in all; 2 with a
    ``read_timeout`` of its own, for calls a request waits for).

    Checksums only "when_required": botocore >= 1.36 otherwise adds CRC32 trailers that S3-compatible
    stores, Cloud.ru's among them, may refuse. Its own session, so ``~/.aws`` profiles play no part.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        region_name=settings.cloudru_s3_region,
        retries={"mode": "standard", "total_max_attempts": 3 if read_timeout is None else 2},
        connect_timeout=settings.s3_connect_timeout_s,
        read_timeout=settings.s3_read_timeout_s if read_timeout is None else read_timeout,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=settings.s3_upload_concurrency + 8,
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
    log = logging.getLogger("app.storage.s3")
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
