"""The job's record (``job.json``) in the bucket, fenced by its owner's epoch (see :mod:`app.jobs.ownership.leases`).

After a claim the new owner writes the record with its epoch over the version it read (:meth:`RecordFence.take`);
every later write is ``If-Match`` on the version this owner wrote last (:meth:`RecordFence.write`). Once a newer owner
has written the record, the bucket refuses an older owner's writes, late or not.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from app.jobs.ownership.bucket import Bucket
from app.storage.s3.errors import Conflict, S3Unavailable

log = logging.getLogger("app.jobs.ownership.leases")


@dataclass(frozen=True)
class Fenced:
    """A record write refused because a newer owner holds the job: ``current`` is the bucket's record."""

    current: bytes | None


class RecordFence:
    """The record versions this replica wrote last, per job it owns; ``lost(job_id)`` is called when a newer owner
    has the job. Thread-safe."""

    def __init__(self, bucket: Bucket, lost: Callable[[str], None]) -> None:
        self.bucket = bucket
        self.lost = lost
        self.records: dict[str, str] = {}  # job id -> ETag of the record version this owner wrote last
        self.lock = threading.Lock()
        self.writing = threading.Lock()  # one write at a time (each needs the previous one's ETag)

    def start(self, job_id: str, etag: str) -> None:
        """This replica created the record (version ``etag``)."""
        with self.lock:
            self.records[job_id] = etag

    def holds(self, job_id: str) -> bool:
        return job_id in self.records

    def forget(self, job_id: str) -> None:
        with self.lock:
            self.records.pop(job_id, None)

    def take(self, job_id: str, update: Callable[[bytes], bytes | None]) -> bytes | None:
        """After a claim: read the job's record and write ``update(record)`` over it (``If-Match``), so that from now
        on only this owner's writes land. Returns what was written; None when there is no record or ``update`` says
        there is nothing to run (the caller then ends or hands back the lease). :class:`S3Unavailable`."""
        key = self.bucket.layout.job(job_id)
        for _ in range(5):
            stored = self.bucket.get(key)
            if stored is None:
                return None
            body = update(stored.body)
            if body is None:
                return None
            try:
                etag = self.bucket.put_if_match(key, body, stored.etag)
            except Conflict:
                continue  # the previous owner wrote meanwhile: read again, write over that
            with self.lock:
                self.records[job_id] = etag
            return body
        raise S3Unavailable(f"job {job_id}: its record kept changing while being taken over")

    def write(self, job_id: str, body: bytes) -> Fenced | None:
        """Write the job's record over the version this owner wrote last. None when written; :class:`Fenced` when a
        newer owner holds the job (then it is lost here). :class:`S3Unavailable` (retried by the caller).

        A refused write is followed by a read: when the record there is still this owner's (same owner and epoch:
        an earlier write of ours landed after its answer was lost), it is written over that version instead."""
        key = self.bucket.layout.job(job_id)
        with self.writing:
            etag = self.records.get(job_id)
            current = None
            for _ in range(5):
                if etag is None:
                    return Fenced(None)
                try:
                    self.records[job_id] = self.bucket.put_if_match(key, body, etag)
                    return None
                except Conflict:
                    current = self.bucket.get(key)
                if current is None or not _same_owner(current.body, body):
                    break
                etag = self.records[job_id] = current.etag
            else:
                raise S3Unavailable(f"job {job_id}: its record kept changing while being written")
        log.warning("job %s: a newer owner holds it; this replica's record is not written and it stops", job_id)
        self.lost(job_id)
        return Fenced(None if current is None else current.body)


def _same_owner(current: bytes, mine: bytes) -> bool:
    """Whether the record ``current`` was written by the owner (and epoch) that writes ``mine``."""
    try:
        a, b = json.loads(current), json.loads(mine)
    except ValueError:
        return False
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    return a.get("owner") == b.get("owner") and a.get("epoch", 0) == b.get("epoch", 0)
