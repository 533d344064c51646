"""Direct, blocking calls on the bucket: reads, listings, deletes and the writes that must happen now.

The job store uses them where waiting for the background uploads (:mod:`app.storage.s3.mirror`) will not do: accepting a
job (its document, record and lease must be in the bucket before the answer), leases, reading another replica's
job. They use their own client with a short read timeout and two tries, so that a hanging S3 delays a request by
seconds, not minutes; a failure is an :class:`~app.storage.s3.client.S3Unavailable` with a safe message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.settings import Settings
from app.storage.s3.client import make_client
from app.storage.s3.errors import S3Unavailable, describe_error, is_not_found
from app.storage.s3.keys import KeyLayout

DIRECT_READ_TIMEOUT_S = 10.0


class S3Objects:
    """The bucket's objects, called directly. ``report`` receives each failure's safe description (for /health)."""

    def __init__(self, settings: Settings, secrets: list[str], report: Callable[[dict[str, str]], None]) -> None:
        self.settings = settings
        self.bucket = settings.cloudru_s3_bucket
        self.layout = KeyLayout(settings.cloudru_s3_prefix)
        self._secrets = secrets
        self._report = report
        self._client: Any = None
        self._lock = threading.Lock()
        self.failed_at = -1e9  # time.monotonic() of the last failure
        self.failure = ""

    def client(self) -> Any:
        """The boto3 client (created on first use). :class:`S3Unavailable` when it cannot be created."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(
                        self.settings, read_timeout=min(DIRECT_READ_TIMEOUT_S, self.settings.s3_read_timeout_s)
                    )
                except Exception as exc:
                    raise self.unavailable(exc, "connecting") from None
            return self._client

    def unavailable(self, exc: BaseException, doing: str) -> S3Unavailable:
        """A safe :class:`S3Unavailable` for a failed call, reported for ``/health``."""
        described = describe_error(exc, self._secrets)
        self._report(described)
        message = f"S3 storage could not be used ({doing}): {described['type']}: {described['message']}"
        self.note_failure(message)
        return S3Unavailable(message)

    def note_failure(self, message: str) -> None:
        """Remember a failure (also one of the background uploads) for :meth:`recent_failure`."""
        self.failed_at = time.monotonic()
        self.failure = message

    def recent_failure(self, seconds: float) -> str | None:
        """The last failure's message when it happened less than ``seconds`` ago (to refuse work at once)."""
        return self.failure if time.monotonic() - self.failed_at < seconds else None

    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream", **conditions: str) -> str:
        """Write an object; returns its ETag. Errors other than :class:`S3Unavailable` (a lost conditional write) are
        re-raised as they are for the caller to judge."""
        client = self.client()
        response = client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **conditions)
        return str(response.get("ETag", ""))

    def upload(self, path: Path, key: str) -> None:
        """Upload a local file (multipart when large). :class:`S3Unavailable`."""
        client = self.client()
        try:
            client.upload_file(str(path), self.bucket, key)
        except Exception as exc:
            raise self.unavailable(exc, "uploading") from None

    def fetch(self, key: str) -> bytes | None:
        """An object's bytes; None when it does not exist. :class:`S3Unavailable`."""
        found = self.fetch_tagged(key)
        return None if found is None else found[0]

    def fetch_tagged(self, key: str) -> tuple[bytes, str] | None:
        """An object's bytes and ETag; None when it does not exist. :class:`S3Unavailable`."""
        client = self.client()
        try:
            got = client.get_object(Bucket=self.bucket, Key=key)
            return got["Body"].read(), str(got.get("ETag", ""))
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise self.unavailable(exc, "reading") from None

    def download(self, key: str, target: Path) -> bool:
        """Save an object to ``target`` (atomically); False when it does not exist. :class:`S3Unavailable`."""
        client = self.client()
        partial = target.with_name(f".{target.name}.part")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            client.download_file(self.bucket, key, str(partial))
            partial.replace(target)
            return True
        except Exception as exc:
            partial.unlink(missing_ok=True)
            if is_not_found(exc):
                return False
            raise self.unavailable(exc, "downloading") from None

    def keys(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under ``prefix``: ``{"Key", "LastModified", ...}``. :class:`S3Unavailable`."""
        client = self.client()
        found: list[dict[str, Any]] = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                found.extend(page.get("Contents", []))
        except Exception as exc:
            raise self.unavailable(exc, "listing") from None
        return found

    def delete(self, keys: list[str]) -> None:
        """Delete objects (missing ones are fine). :class:`S3Unavailable`."""
        client = self.client()
        for key in keys:
            try:
                client.delete_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if not is_not_found(exc):
                    raise self.unavailable(exc, "deleting") from None

    def list_result(self, result_dir: str) -> list[str]:
        """Keys under a result folder (``result.json`` last); [] when unreadable."""
        prefix = self.layout.result(result_dir) + "/"
        try:
            names = [obj["Key"][len(prefix) :] for obj in self.keys(prefix)]
        except S3Unavailable:
            return []
        rank = {"result.md": 1, "result.json": 2}
        return [prefix + n for n in sorted(sorted(names), key=lambda n: rank.get(n, 0))]
