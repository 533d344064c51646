"""Direct, blocking calls on the bucket: reads, listings, deletes and the writes that must happen now.

The job store uses them where waiting for the background uploads (:mod:`app.storage.s3.mirror`) will not do:
accepting a job (its document, record and lease must be in the bucket before the answer), leases, reading another
replica's job. They use their own client with a short read timeout and two tries, so that a hanging S3 delays a
request by seconds, not minutes; a failure is an :class:`~app.storage.s3.errors.S3Unavailable` with a safe message.

**Conditional writes** are the only way ownership state is written (:mod:`app.jobs.ownership`):
:meth:`S3Objects.put_if_absent`, :meth:`S3Objects.put_if_match` and :meth:`S3Objects.delete_if_match` raise
:class:`~app.storage.s3.errors.Conflict` when the condition does not hold. They send ``If-None-Match: *`` /
``If-Match: <etag>``, which the bucket checks atomically where it enforces them (:meth:`S3Objects.detect_conditions`,
shown in ``/health``); where it does not, the condition is checked here with a read first (not atomic: the ownership
protocol then also reads its claims back after a pause). ETags are compared without their quotes.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from app.settings import Settings
from app.storage.s3.client import make_client
from app.storage.s3.errors import (
    Conflict,
    S3Unavailable,
    describe_error,
    error_code,
    is_not_found,
    is_precondition_failed,
)
from app.storage.s3.keys import KeyLayout

DIRECT_READ_TIMEOUT_S = 10.0

Conditions = Literal["checking", "enforced", "not_enforced"]
T = TypeVar("T")


@dataclass(frozen=True)
class Stored:
    """An object's bytes and the ETag of that version."""

    body: bytes
    etag: str


@dataclass(frozen=True)
class Listed:
    """One object of a listing: its key, the ETag of its current version and when it was written (S3's clock)."""

    key: str
    etag: str
    modified: datetime


def plain_etag(etag: str | None) -> str:
    return (etag or "").strip().strip('"')


class S3Objects:
    """The bucket's objects, called directly.

    ``report`` receives each failure's safe description and ``recovered`` is called on the first success after a
    failure (the mirror resumes its uploads at once: any working call proves that S3 is back).
    """

    def __init__(
        self,
        settings: Settings,
        secrets: list[str],
        report: Callable[[dict[str, str]], None],
        recovered: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.bucket = settings.cloudru_s3_bucket
        self.layout = KeyLayout(settings.cloudru_s3_prefix)
        self._secrets = secrets
        self._report = report
        self._recovered = recovered
        self._client: Any = None
        self._lock = threading.Lock()
        self.failed_at = -1e9  # time.monotonic() of the last failure
        self.failure = ""
        self.failing = False  # the last direct call failed
        self.conditions: Conditions = "checking"

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

    # --- failures and recovery ---------------------------------------------------------------------
    def unavailable(self, exc: BaseException, doing: str) -> S3Unavailable:
        """A safe :class:`S3Unavailable` for a failed call, reported for ``/health``."""
        described = describe_error(exc, self._secrets)
        self._report(described)
        message = f"S3 storage could not be used ({doing}): {described['type']}: {described['message']}"
        self.note_failure(message)
        self.failing = True
        return S3Unavailable(message)

    def note_failure(self, message: str) -> None:
        """Remember a failure (also one of the background uploads) for :meth:`recent_failure`."""
        self.failed_at = time.monotonic()
        self.failure = message

    def recent_failure(self, seconds: float) -> str | None:
        """The last failure's message when it happened less than ``seconds`` ago (to refuse work at once)."""
        return self.failure if time.monotonic() - self.failed_at < seconds else None

    def _succeeded(self) -> None:
        if self.failing:
            self.failing = False
            if self._recovered is not None:
                self._recovered()

    def _call(self, doing: str, call: Callable[[], T], *, conflict: bool = False) -> T:
        """Run one call: :class:`Conflict` for a lost condition (when ``conflict``), else :class:`S3Unavailable`."""
        try:
            result = call()
        except Exception as exc:
            if conflict and (is_precondition_failed(exc) or is_not_found(exc)):
                self._succeeded()  # S3 answered
                raise Conflict(doing) from None
            raise self.unavailable(exc, doing) from None
        self._succeeded()
        return result

    # --- plain calls -------------------------------------------------------------------------------
    def put(self, key: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Write an object unconditionally (data whose key nobody else writes); returns its ETag."""
        client = self.client()
        response = self._call(
            "writing", lambda: client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        )
        return plain_etag(response.get("ETag"))

    def upload(self, path: Path, key: str) -> None:
        """Upload a local file (multipart when large). :class:`S3Unavailable`."""
        client = self.client()
        self._call("uploading", lambda: client.upload_file(str(path), self.bucket, key))

    def get(self, key: str) -> Stored | None:
        """An object's bytes and ETag; None when it does not exist. :class:`S3Unavailable`."""
        client = self.client()

        def read() -> Stored | None:
            try:
                got = client.get_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                if is_not_found(exc):
                    return None
                raise
            return Stored(got["Body"].read(), plain_etag(got.get("ETag")))

        return self._call("reading", read)

    def fetch(self, key: str) -> bytes | None:
        """An object's bytes; None when it does not exist. :class:`S3Unavailable`."""
        found = self.get(key)
        return None if found is None else found.body

    def download(self, key: str, target: Path) -> bool:
        """Save an object to ``target`` (atomically); False when it does not exist. :class:`S3Unavailable`."""
        client = self.client()
        partial = target.with_name(f".{target.name}.part")
        target.parent.mkdir(parents=True, exist_ok=True)

        def fetch() -> bool:
            try:
                client.download_file(self.bucket, key, str(partial))
            except Exception as exc:
                partial.unlink(missing_ok=True)
                if is_not_found(exc):
                    return False
                raise
            partial.replace(target)
            return True

        return self._call("downloading", fetch)

    def listing(self, prefix: str) -> list[Listed]:
        """Every object under ``prefix`` with its ETag. :class:`S3Unavailable`."""
        client = self.client()

        def listed() -> list[Listed]:
            found = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    found.append(Listed(str(obj["Key"]), plain_etag(obj.get("ETag")), obj["LastModified"]))
            return found

        return self._call("listing", listed)

    def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``. :class:`S3Unavailable`."""
        return [item.key for item in self.listing(prefix)]

    def delete(self, keys: list[str]) -> None:
        """Delete objects nobody else writes (missing ones are fine). :class:`S3Unavailable`."""
        client = self.client()

        def remove() -> None:
            for key in keys:
                try:
                    client.delete_object(Bucket=self.bucket, Key=key)
                except Exception as exc:
                    if not is_not_found(exc):
                        raise

        self._call("deleting", remove)

    def list_result(self, result_dir: str) -> list[str]:
        """Keys under a result folder (``result.json`` last); [] when unreadable."""
        prefix = self.layout.result(result_dir) + "/"
        try:
            names = [key[len(prefix) :] for key in self.keys(prefix)]
        except S3Unavailable:
            return []
        rank = {"result.md": 1, "result.json": 2}
        return [prefix + n for n in sorted(sorted(names), key=lambda n: rank.get(n, 0))]

    # --- conditional writes ------------------------------------------------------------------------
    @property
    def enforced(self) -> bool:
        """Whether the headers are sent (until the bucket is known to ignore them)."""
        return self.conditions != "not_enforced"

    def detect_conditions(self) -> Conditions:
        """Write a probe twice with ``If-None-Match: *``: the bucket enforces conditions when the second write is
        refused. One that refuses the header itself (501 NotImplemented) does not enforce it either.
        :class:`S3Unavailable` when S3 cannot be used."""
        client = self.client()
        key = self.layout.probe(uuid.uuid4().hex)
        state: Conditions = "not_enforced"
        try:
            for attempt in (1, 2):
                try:
                    client.put_object(Bucket=self.bucket, Key=key, Body=str(attempt).encode(), IfNoneMatch="*")
                except Exception as exc:
                    code, status = error_code(exc)
                    if attempt == 2 and is_precondition_failed(exc):
                        state = "enforced"
                    elif status != 501 and code != "NotImplemented":
                        raise self.unavailable(exc, "checking conditional writes") from None
                    break
        finally:
            with contextlib.suppress(S3Unavailable):
                self.delete([key])
        self._succeeded()
        self.conditions = state
        return state

    def put_if_absent(self, key: str, body: bytes, content_type: str = "application/json") -> str:
        """Create ``key``; :class:`Conflict` when it exists. Returns the new ETag."""
        client = self.client()
        if not self.enforced and self.get(key) is not None:
            raise Conflict(f"{key} exists")
        extra = {"IfNoneMatch": "*"} if self.enforced else {}
        response = self._call(
            f"creating {key}",
            lambda: client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra),
            conflict=True,
        )
        return plain_etag(response.get("ETag"))

    def put_if_match(self, key: str, body: bytes, etag: str, content_type: str = "application/json") -> str:
        """Replace the version ``etag`` of ``key``; :class:`Conflict` when it changed or is gone. The new ETag."""
        client = self.client()
        if not self.enforced:
            current = self.get(key)
            if current is None or current.etag != plain_etag(etag):
                raise Conflict(f"{key} changed")
        extra = {"IfMatch": f'"{plain_etag(etag)}"'} if self.enforced else {}
        response = self._call(
            f"replacing {key}",
            lambda: client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra),
            conflict=True,
        )
        return plain_etag(response.get("ETag"))

    def delete_if_match(self, key: str, etag: str) -> None:
        """Delete the version ``etag`` of ``key``; :class:`Conflict` when it changed (gone is fine: nothing to do)."""
        client = self.client()
        if not self.enforced:
            current = self.get(key)
            if current is None:
                return
            if current.etag != plain_etag(etag):
                raise Conflict(f"{key} changed")
        extra = {"IfMatch": f'"{plain_etag(etag)}"'} if self.enforced else {}

        def remove() -> None:
            try:
                client.delete_object(Bucket=self.bucket, Key=key, **extra)
            except Exception as exc:
                if not is_not_found(exc):
                    raise

        self._call(f"deleting {key}", remove, conflict=True)
