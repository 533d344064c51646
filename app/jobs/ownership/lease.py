"""A job's lease, as stored in the bucket, and the pure decisions taken on it.

``<prefix>/leases/<id>.json`` exists from the job's acceptance to its end and says who runs the job:

- ``owner``: the replica running it; null once handed back (anyone may take it at once).
- ``epoch``: raised by every claim. The job's record (``job.json``) carries the epoch of the owner that wrote it,
  and every write of the record is conditional on the version this owner last wrote or read, so an owner of an
  older epoch can never write over a newer owner's record (fencing; :mod:`app.jobs.ownership.leases`).
- ``beat``: raised by every renewal, so that each version's body, and therefore its ETag, differs: observers tell
  a live lease from a dead one by its ETag changing (:mod:`app.jobs.ownership.observer`).
- ``ended``: the job is over; the lease is being deleted and is never claimed again.
- ``takeovers``, ``crashes``, ``progress``, ``running``: what a poison document is judged by (see
  :func:`crashes_after_claim`).
- ``expires_at``: the writer's wall clock plus ``JOB_LEASE_S``, for people reading the bucket; never used to decide
  anything (clocks of different replicas need not agree).

Leases written by earlier versions (no ``epoch``, ``beat`` or ``ended``) read as epoch 0, beat 0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Lease:
    """One version of a job's lease; ``etag`` is S3's tag of it (not stored in the body)."""

    job_id: str
    owner: str | None
    epoch: int = 0
    beat: int = 0
    expires_at: float = 0.0
    takeovers: int = 0  # claims by another replica after the first owner
    crashes: int = 0  # takeovers in a row whose previous owner stopped without handing the job back
    progress: int = 0  # pages done when this owner took the job (a crash without progress counts)
    running: bool = False  # this owner has started recognising the job's pages (only then does its crash count)
    ended: bool = False
    nonce: str = ""  # set by each claim, kept by its renewals: tells this owner's own writes apart
    etag: str | None = None

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("etag")
        return json.dumps(data).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, etag: str | None) -> Lease:
        """ValueError when the body is not a lease."""
        raw: Any = json.loads(data)
        if not isinstance(raw, dict) or "job_id" not in raw:
            raise ValueError("not a lease")
        return cls(
            job_id=str(raw["job_id"]),
            owner=raw.get("owner"),
            epoch=int(raw.get("epoch", 0)),
            beat=int(raw.get("beat", 0)),
            expires_at=float(raw.get("expires_at", 0)),
            takeovers=int(raw.get("takeovers", 0)),
            crashes=int(raw.get("crashes", 0)),
            progress=int(raw.get("progress", 0)),
            running=bool(raw.get("running", False)),
            ended=bool(raw.get("ended", False)),
            nonce=str(raw.get("nonce", "")),
            etag=etag,
        )

    def same_write(self, other: Lease) -> bool:
        """Whether ``other`` is this very version (an earlier write of ours that landed after all)."""
        return self.to_json() == other.to_json()

    def mine(self, replica: str) -> bool:
        return self.owner == replica and not self.ended


def crashes_after_claim(previous: Lease) -> int:
    """The ``crashes`` count of a new claim on ``previous``: a handed-back job starts again from 0 (whatever stopped
    that replica, it was not this job); an expired lease counts one more crash only when the job's pages were being
    recognised (a replica that dies while the job waits in its queue says nothing about the document)."""
    if previous.owner is None:
        return 0
    return previous.crashes + 1 if previous.running else previous.crashes


def crashes_with_progress(crashes: int, pages_done: int, progress: int) -> int:
    """Crashes in a row without progress: a claim that finds more pages done than the previous claim did starts the
    count again (at most 1: this takeover itself)."""
    return min(crashes, 1) if pages_done > progress else crashes
