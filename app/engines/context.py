"""What the service lends the engines it builds besides the settings: places to keep small state across restarts.

An engine may remember what it learned at run time (the VL engine: its VLM request limit) in ``state_dir``, a folder
on the local disk, or, with S3 configured, in the bucket the replicas share (``shared``, keys under
``shared_prefix``), where the other replicas read it too. Both are optional: an engine works without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


class ListedObject(Protocol):
    """One object of a listing: its key and when it was written."""

    @property
    def key(self) -> str: ...

    @property
    def modified(self) -> datetime: ...


class SharedObjects(Protocol):
    """Blocking calls on the shared bucket (:class:`app.storage.s3.objects.S3Objects` is one). Failures raise
    an exception with a safe message (no secrets)."""

    def put(self, key: str, body: bytes, content_type: str = ...) -> str:
        """Write an object; returns its ETag."""

    def fetch(self, key: str) -> bytes | None:
        """An object's bytes; ``None`` when it does not exist."""

    def listing(self, prefix: str) -> Sequence[ListedObject]:
        """Every object under ``prefix``."""

    def delete(self, keys: list[str]) -> None:
        """Delete objects (missing ones are fine)."""


@dataclass(frozen=True)
class EngineContext:
    """Places an engine may keep state in (see the module docstring); ``replica`` names this process among the
    replicas that share the bucket."""

    state_dir: Path | None = None
    shared: SharedObjects | None = None
    shared_prefix: str = ""
    replica: str = "local"

    def shared_key(self, relative: str) -> str:
        """A key under the configured prefix."""
        prefix = self.shared_prefix.strip("/")
        return f"{prefix}/{relative}" if prefix else relative
