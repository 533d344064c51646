"""Where the VLM request limit is remembered: one small JSON snapshot per replica, in the bucket or a folder.

:class:`LimiterMemory` is the seam: ``load()`` every replica's latest snapshot of one VLM server, ``save()``
this replica's. :class:`BucketMemory` keeps them in the bucket the replicas share, under
``<CLOUDRU_S3_PREFIX>/vlm/limits/<server>/<replica>.json`` (``<server>``: a hash of the server's URL, so
a new server starts from nothing); :class:`FolderMemory` keeps the same files in a local folder
(``<OUTPUT_DIR>/.engines/vlm/limits/<server>/``) when S3 is off. Snapshots older than :data:`RETAIN_S` are
deleted by whoever reads them. A snapshot holds numbers only: no URL, no credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from app.engines.context import EngineContext, SharedObjects

log = logging.getLogger("app.engines.paddleocr_vl")

#: Snapshots of replicas gone this long are deleted.
RETAIN_S = 7 * 24 * 3600.0
#: Snapshots read at most (the newest): a fleet never has this many replicas alive.
MAX_SNAPSHOTS = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

State = Literal["joining", "running", "left"]


@dataclass(frozen=True)
class Snapshot:
    """One replica's limit as it published it (``at``: wall time). ``fleet_total``: its limit plus the other
    replicas' as it last read them; ``knee_total``: that total when it last saw the server queue (``None``:
    never), at ``knee_at``; ``binding``: its limit held requests back since the last snapshot; ``peak``: the
    most requests it had in flight then."""

    replica: str
    at: float
    state: State
    limit: float
    ssthresh: float | None
    baseline_s: float | None
    binding: bool
    peak: int
    fleet_total: float
    knee_total: float | None = None
    knee_at: float | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Snapshot | None:
        """The snapshot, or ``None`` for anything malformed (a reader never fails on a bad file)."""
        try:
            data = json.loads(raw)
            snapshot = cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
            float(snapshot.at), float(snapshot.limit), float(snapshot.fleet_total)
        except (ValueError, TypeError, KeyError):
            return None
        return snapshot if snapshot.state in ("joining", "running", "left") else None


class LimiterMemory(Protocol):
    """Snapshots of one VLM server's limit, one per replica (see the module docstring). Both methods block and
    may raise (``OSError``, the bucket's unavailability): callers treat that as "no memory now"."""

    where: str  # for logs

    def load(self, recent_s: float | None = None) -> list[Snapshot]:
        """Every replica's latest snapshot, this replica's too; with ``recent_s``, only those written within that
        many seconds of the newest one (the store's own times: no clock of ours compared with another's)."""

    def save(self, snapshot: Snapshot) -> None:
        """Publish this replica's snapshot (replacing its previous one)."""


def server_key(server: str) -> str:
    """The folder name for one VLM server: a hash of its URL (the URL itself stays out of the bucket)."""
    return hashlib.sha256(server.encode()).hexdigest()[:16]


def file_name(replica: str) -> str:
    return (_UNSAFE.sub("_", replica)[:100] or "replica") + ".json"


class FolderMemory:
    """Snapshots as files in a local folder (atomic writes)."""

    def __init__(self, folder: Path, clock: Any = time.time) -> None:
        self.folder = folder
        self.where = str(folder)
        self._clock = clock

    def save(self, snapshot: Snapshot) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / file_name(snapshot.replica)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(snapshot.to_json())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self, recent_s: float | None = None) -> list[Snapshot]:
        if not self.folder.is_dir():
            return []
        found = []
        files = sorted(((path, _mtime(path)) for path in self.folder.glob("*.json")), key=lambda f: f[1], reverse=True)
        newest = files[0][1] if files else 0.0
        for path, written in files[:MAX_SNAPSHOTS]:
            if recent_s is not None and newest - written > recent_s:
                break
            with contextlib.suppress(OSError):
                snapshot = Snapshot.from_json(path.read_bytes())
                if snapshot is not None and self._clock() - snapshot.at > RETAIN_S:
                    path.unlink(missing_ok=True)
                elif snapshot is not None:
                    found.append(snapshot)
        return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class BucketMemory:
    """Snapshots as objects in the bucket the replicas share, through its direct calls."""

    def __init__(self, objects: SharedObjects, prefix: str, clock: Any = time.time) -> None:
        self.objects = objects
        self.prefix = prefix.rstrip("/") + "/"
        self.where = f"the bucket, {self.prefix}"
        self._clock = clock

    def save(self, snapshot: Snapshot) -> None:
        self.objects.put(self.prefix + file_name(snapshot.replica), snapshot.to_json(), "application/json")

    def load(self, recent_s: float | None = None) -> list[Snapshot]:
        listed = sorted(self.objects.listing(self.prefix), key=lambda item: _when(item.modified))
        newest = _when(listed[-1].modified) if listed else 0.0
        found, old = [], []
        for item in reversed(listed[-MAX_SNAPSHOTS:]):
            if recent_s is not None and newest - _when(item.modified) > recent_s:
                break  # older ones are history, read at start only
            raw = self.objects.fetch(item.key)
            snapshot = None if raw is None else Snapshot.from_json(raw)
            if snapshot is not None and self._clock() - snapshot.at > RETAIN_S:
                old.append(item.key)
            elif snapshot is not None:
                found.append(snapshot)
        if old:
            try:
                self.objects.delete(old)
            except Exception as exc:  # clean-up only: the next reader tries again
                log.debug("paddleocr-vl: old limit snapshots not deleted: %s", exc)
        return found


def _when(value: Any) -> float:
    """An object's LastModified (a datetime from boto3, or a number) as seconds; 0 when unknown."""
    if isinstance(value, (int, float)):
        return float(value)
    timestamp = getattr(value, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else 0.0


def memory_for(context: EngineContext, server: str) -> LimiterMemory | None:
    """The bucket when the context has one, else its local folder, else nothing."""
    relative = f"vlm/limits/{server_key(server)}"
    if context.shared is not None:
        return BucketMemory(context.shared, context.shared_key(relative))
    if context.state_dir is not None:
        return FolderMemory(context.state_dir / relative)
    return None
