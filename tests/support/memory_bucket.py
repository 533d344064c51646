"""An in-memory bucket for the ownership protocol's unit tests, with the faults a real one has.

It implements :class:`app.jobs.ownership.bucket.Bucket` as S3 does: ETags are the MD5 of the body, ``If-None-Match``
and ``If-Match`` are checked atomically (``enforced=True``) or not at all (``enforced=False``: then the check is a
read before the write, as :class:`app.storage.s3.objects.S3Objects` does on such buckets, and ``race`` lets a test
slip another write in between). Faults:

- ``down``: every call raises :class:`S3Unavailable` (an outage);
- ``lose_answers``: the next N writes land but their caller gets :class:`S3Unavailable` (a timeout);
- ``hold_writes``: the next N writes do not land now and their caller gets :class:`S3Unavailable`; they land later,
  conditions checked then, when :meth:`MemoryBucket.land_held` is called (a request stuck in the network).

Every write of a job's record that lands is logged (``record_writes``: job id, epoch, owner, status), so that tests
can check the fencing invariants.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from app.storage.s3.errors import Conflict, S3Unavailable
from app.storage.s3.keys import KeyLayout
from app.storage.s3.objects import Listed, Stored


@dataclass
class RecordWrite:
    job_id: str
    epoch: int
    owner: str | None
    status: str


@dataclass
class MemoryBucket:
    layout: KeyLayout = field(default_factory=lambda: KeyLayout("p"))
    enforced: bool = True
    down: bool = False
    lose_answers: int = 0
    hold_writes: int = 0
    objects: dict[str, bytes] = field(default_factory=dict)
    record_writes: list[RecordWrite] = field(default_factory=list)
    held: list[Callable[[], None]] = field(default_factory=list)
    race: Callable[[str], None] | None = None  # called between the check and the write when not enforced
    failed_at: float = -1e9

    @property
    def conditions(self) -> str:
        return "enforced" if self.enforced else "not_enforced"

    def detect_conditions(self) -> str:
        self._check_up()
        return self.conditions

    def recent_failure(self, seconds: float) -> str | None:
        return "S3 is down" if self.down else None

    # --- reads -----------------------------------------------------------------------------------
    def get(self, key: str) -> Stored | None:
        self._check_up()
        body = self.objects.get(key)
        return None if body is None else Stored(body, _etag(body))

    def listing(self, prefix: str) -> list[Listed]:
        self._check_up()
        now = datetime.now(timezone.utc)
        return [Listed(k, _etag(v), now) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]

    # --- writes ----------------------------------------------------------------------------------
    def put(self, key: str, body: bytes, content_type: str = "") -> str:
        return self._write(key, body, lambda: None)

    def put_if_absent(self, key: str, body: bytes, content_type: str = "") -> str:
        def condition() -> None:
            if key in self.objects:
                raise Conflict(key)

        return self._write(key, body, condition)

    def put_if_match(self, key: str, body: bytes, etag: str, content_type: str = "") -> str:
        def condition() -> None:
            current = self.objects.get(key)
            if current is None or _etag(current) != etag.strip('"'):
                raise Conflict(key)

        return self._write(key, body, condition)

    def delete_if_match(self, key: str, etag: str) -> None:
        def condition() -> None:
            current = self.objects.get(key)
            if current is not None and _etag(current) != etag.strip('"'):
                raise Conflict(key)

        self._write(key, None, condition)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._write(key, None, lambda: None)

    # --- faults ----------------------------------------------------------------------------------
    def land_held(self) -> None:
        """Let the held writes land now, in order (each checks its condition now; a refused one is dropped)."""
        held, self.held = self.held, []
        for land in held:
            with contextlib.suppress(Conflict):
                land()

    def _check_up(self) -> None:
        if self.down:
            raise S3Unavailable("S3 storage could not be used: the bucket is down")

    def _write(self, key: str, body: bytes | None, condition: Callable[[], None]) -> str:
        self._check_up()

        def land() -> None:
            condition()
            if not self.enforced and self.race is not None:
                self.race(key)
            if body is None:
                self.objects.pop(key, None)
            else:
                self.objects[key] = body
                self._log_record(key, body)

        if self.hold_writes:
            self.hold_writes -= 1
            if self.enforced:
                self.held.append(land)
            else:  # the check happened now, the write lands later
                condition()
                self.held.append(lambda: self._land_unchecked(key, body))
            raise S3Unavailable("S3 storage could not be used: read timeout")
        land()
        if self.lose_answers:
            self.lose_answers -= 1
            raise S3Unavailable("S3 storage could not be used: read timeout")
        return _etag(body) if body is not None else ""

    def _land_unchecked(self, key: str, body: bytes | None) -> None:
        if body is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = body
            self._log_record(key, body)

    def _log_record(self, key: str, body: bytes) -> None:
        if not key.endswith("/job.json"):
            return
        raw = json.loads(body)
        self.record_writes.append(RecordWrite(raw["id"], int(raw.get("epoch", 0)), raw.get("owner"), raw["status"]))

    # --- reading for tests -----------------------------------------------------------------------
    def lease(self, job_id: str) -> dict[str, object] | None:
        body = self.objects.get(self.layout.lease(job_id))
        return None if body is None else dict(json.loads(body))

    def record(self, job_id: str) -> dict[str, object] | None:
        body = self.objects.get(self.layout.job(job_id))
        return None if body is None else dict(json.loads(body))


def _etag(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()
