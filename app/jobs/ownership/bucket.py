"""What the ownership protocol needs of a bucket: conditional writes, versioned reads, listings with versions.

:class:`~app.storage.s3.objects.S3Objects` is the real one; the protocol's unit tests run it on an in-memory bucket
with injected faults (``tests/support/memory_bucket.py``). Every method may raise
:class:`~app.storage.s3.errors.S3Unavailable`; the conditional ones raise :class:`~app.storage.s3.errors.Conflict`.
"""

from __future__ import annotations

from typing import Protocol

from app.storage.s3.keys import KeyLayout
from app.storage.s3.objects import Listed, Stored


class Bucket(Protocol):
    layout: KeyLayout

    @property
    def enforced(self) -> bool:
        """Whether the bucket checks the conditions itself (atomically)."""

    def detect_conditions(self) -> str: ...

    def recent_failure(self, seconds: float) -> str | None: ...

    def get(self, key: str) -> Stored | None: ...

    def listing(self, prefix: str) -> list[Listed]: ...

    def put(self, key: str, body: bytes, content_type: str = ...) -> str:
        """Unconditional: only for hints nobody relies on (handover and cancel markers)."""

    def put_if_absent(self, key: str, body: bytes, content_type: str = ...) -> str: ...

    def put_if_match(self, key: str, body: bytes, etag: str, content_type: str = ...) -> str: ...

    def delete_if_match(self, key: str, etag: str) -> None: ...

    def delete(self, keys: list[str]) -> None:
        """Unconditional: markers and objects of a job whose lease this replica has just ended."""
