"""Leases in the bucket: which replica runs which unfinished job, and until when.

``<prefix>/leases/<id>.json`` exists from the job's acceptance to its end; it says who runs the job
(``owner``), until when (``expires_at``, wall clock, seconds) and how often the job was taken over. The owner
renews it every ``JOB_LEASE_S / 3`` seconds. Another replica may take the job (claim it) once the lease has
expired (the owner died: a *crash* takeover) or has been handed back (the owner stopped: SIGTERM).

Claims and renewals are conditional writes: ``If-None-Match: *`` creates a lease, ``If-Match: <etag>`` replaces
the version that was read, so of two replicas claiming at once exactly one wins, and an owner learns that it has
lost a job at its next renewal. Whether the bucket enforces these headers is checked at start
(:meth:`LeaseBook.detect_conditional_writes`, shown in ``/health``); where it does not, a claim writes a nonce,
waits ``settle_s`` and reads the lease back: the claim holds only if the nonce is still there.

A takeover after a crash (the lease expired without being handed back) counts against the job (``crashes``, see
``MAX_JOB_TAKEOVERS``) only when the lease says that the job's pages were being recognised (``running``, written
as the first page starts): a replica that dies while the job waits in its queue says nothing about its document.

Clocks: expiry compares wall clocks of different replicas; the lease period must be far longer than their skew
(seconds on a platform that keeps time with NTP).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from app.storage.local import is_valid_id
from app.storage.s3.errors import S3Unavailable, error_code, is_not_found, is_precondition_failed
from app.storage.s3.mirror import S3Mirror

log = logging.getLogger(__name__)

ConditionalWrites = Literal["checking", "enforced", "not_enforced", "unknown"]


@dataclass(frozen=True)
class Lease:
    """One version of a job's lease; ``etag`` is S3's tag of it (not stored in the body)."""

    job_id: str
    owner: str | None
    expires_at: float
    takeovers: int = 0  # claims by another replica after the first owner
    crashes: int = 0  # takeovers in a row whose previous owner stopped without handing the job back
    progress: int = 0  # pages done when this owner took the job (a crash without progress counts)
    running: bool = False  # this owner has started recognising the job's pages (only then does its crash count)
    nonce: str = ""
    etag: str | None = None

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("etag")
        return json.dumps(data).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, etag: str | None) -> Lease:
        raw: dict[str, Any] = json.loads(data)
        return cls(
            job_id=str(raw["job_id"]),
            owner=raw.get("owner"),
            expires_at=float(raw.get("expires_at", 0)),
            takeovers=int(raw.get("takeovers", 0)),
            crashes=int(raw.get("crashes", 0)),
            progress=int(raw.get("progress", 0)),
            running=bool(raw.get("running", False)),
            nonce=str(raw.get("nonce", "")),
            etag=etag,
        )

    def free(self, now: float) -> bool:
        """Whether another replica may take the job: handed back, or expired."""
        return self.owner is None or self.expires_at <= now


class LeaseLost(Exception):
    """The lease changed since this replica read it: another replica holds the job."""


class LeaseBook:
    """This replica's leases: creating, claiming, renewing, handing back and dropping them (blocking calls)."""

    def __init__(self, mirror: S3Mirror, replica: str, ttl: float) -> None:
        self.mirror = mirror
        self.objects = mirror.objects
        self.layout = mirror.layout
        self.replica = replica
        self.ttl = ttl
        self.settle_s = min(2.0, ttl / 5)
        self.conditional: ConditionalWrites = "checking"
        self.held: dict[str, Lease] = {}
        self.finishing: set[str] = set()  # finished here; the lease goes once the job's uploads are through
        self.lost: set[str] = set()
        self.with_lease: dict[str, list[str]] = {}  # objects to delete together with a job's lease
        self.cancel: set[str] = set()
        self.claimed = 0  # jobs taken over by this replica since start
        self.lock = threading.Lock()  # guards the sets and ``held`` (memory only)
        self.writing = threading.Lock()  # one write of a held lease at a time (each needs the previous one's ETag)

    # --- the bucket's conditional writes ------------------------------------------------------------
    def detect_conditional_writes(self) -> ConditionalWrites:
        """Write a probe twice with ``If-None-Match: *``: the second write must be refused (412). A bucket that
        refuses the header itself (501) does not enforce it either. :class:`S3Unavailable` when S3 cannot be used."""
        key = self.layout.probe(f"{self.replica}-{uuid.uuid4().hex[:8]}")
        state: ConditionalWrites = "not_enforced"
        try:
            for attempt in (1, 2):
                try:
                    self.objects.put(key, str(attempt).encode(), IfNoneMatch="*")
                except S3Unavailable:
                    raise
                except Exception as exc:
                    if attempt == 2 and is_precondition_failed(exc):
                        state = "enforced"
                    elif error_code(exc)[1] != 501 and error_code(exc)[0] != "NotImplemented":
                        raise self.objects.unavailable(exc, "checking conditional writes") from None
                    break
        finally:
            self._delete_quietly([key])
        self.conditional = state
        if state == "enforced":
            log.info("S3: the bucket enforces conditional writes; job claims use If-None-Match / If-Match")
        else:
            log.warning(
                "S3: the bucket ignores conditional writes; job claims are checked after %.1f s instead",
                self.settle_s,
            )
        return state

    @property
    def enforced(self) -> bool:
        return self.conditional in ("enforced", "checking", "unknown")  # try the headers until proven useless

    # --- reading and writing one lease ------------------------------------------------------------
    def read(self, job_id: str) -> Lease | None:
        found = self.objects.fetch_tagged(self.layout.lease(job_id))
        return None if found is None else Lease.from_json(found[0], found[1])

    def _write(self, lease: Lease, *, create: bool = False, previous: Lease | None = None, again: bool = True) -> Lease:
        """Put ``lease``: only if absent (``create``) or unchanged since ``previous`` was read. :class:`LeaseLost`."""
        extra: dict[str, str] = {}
        if self.enforced:
            if create:
                extra["IfNoneMatch"] = "*"
            elif previous is not None and previous.etag:
                extra["IfMatch"] = previous.etag
        try:
            etag = self.objects.put(self.layout.lease(lease.job_id), lease.to_json(), "application/json", **extra)
        except S3Unavailable:
            raise
        except Exception as exc:
            if is_precondition_failed(exc) or (previous is not None and is_not_found(exc)):
                mine = self._written_earlier(lease) if again else None
                if mine is None:
                    raise LeaseLost(lease.job_id) from None
                if mine.to_json() == lease.to_json() or create:
                    return mine
                return self._write(lease, previous=mine, again=False)  # once more, on top of our own earlier version
            raise self.objects.unavailable(exc, "writing a lease") from None
        return replace(lease, etag=etag)

    def _written_earlier(self, lease: Lease) -> Lease | None:
        """After a refused conditional write: the lease in the bucket when this replica wrote it itself — an earlier
        write whose answer was lost (a timeout; its try landed when S3 came back) — else None. The nonce is set when
        a replica takes the job and kept by its renewals, so only this owner writes it."""
        try:
            current = self.read(lease.job_id)
        except S3Unavailable:
            return None
        if current is not None and current.nonce == lease.nonce and current.owner == lease.owner:
            log.info("job %s: an earlier write of the lease had landed after all", lease.job_id)
            return current
        return None

    def _settled(self, lease: Lease) -> bool:
        """Without conditional writes: after a pause, is the lease still the one this replica wrote?"""
        time.sleep(self.settle_s)
        current = self.read(lease.job_id)
        return current is not None and current.nonce == lease.nonce and current.owner == self.replica

    # --- what this replica does -------------------------------------------------------------------
    def create(self, job_id: str) -> None:
        """The lease of a job accepted here. :class:`S3Unavailable`, or :class:`LeaseLost` (id reused)."""
        lease = Lease(job_id, self.replica, time.time() + self.ttl, nonce=uuid.uuid4().hex)
        written = self._write(lease, create=True)
        with self.lock:
            self.held[job_id] = written

    def claim(self, job_id: str) -> Lease | None:
        """Take a free job: the new lease, or None when it is held, gone, or another replica won the race."""
        current = self.read(job_id)
        now = time.time()
        if current is None or not current.free(now) or job_id in self.held:
            return None
        if current.owner is None:  # handed back: whatever stopped that replica, it was not this job
            crashes = 0
        elif current.running:  # expired while the job's pages were being recognised: maybe the job's doing
            crashes = current.crashes + 1
        else:  # expired while the job only waited in that replica's queue (or while it was loading)
            crashes = current.crashes
        lease = Lease(
            job_id,
            self.replica,
            now + self.ttl,
            takeovers=current.takeovers + 1,
            crashes=crashes,
            progress=current.progress,
            nonce=uuid.uuid4().hex,
        )
        try:
            written = self._write(lease, previous=current)
        except LeaseLost:
            return None
        if not self.enforced and not self._settled(written):
            return None
        with self.lock:
            self.held[job_id] = written
            self.claimed += 1
        self._delete_quietly([self.layout.handover(job_id)])
        return written

    def adjust(self, job_id: str, *, crashes: int, progress: int) -> None:
        """Correct a held lease once the job's record is read (written with the next renewal)."""
        with self.lock:
            lease = self.held.get(job_id)
            if lease is not None:
                self.held[job_id] = replace(lease, crashes=crashes, progress=progress)

    def renew(self) -> None:
        """Extend every held lease; a lease that changed is lost (another replica took the job)."""
        with self.lock:
            held = list(self.held)
        for job_id in held:
            self._extend(job_id)

    def mark_running(self, job_id: str) -> None:
        """A page of the held job is about to be recognised here for the first time: say so in its lease at once,
        so that a crash from now on counts against the job (one while it only waited in this replica's queue does
        not). While S3 is failing the flag is written with the next renewal instead."""
        with self.lock:
            lease = self.held.get(job_id)
            if lease is None or lease.running:
                return
            self.held[job_id] = replace(lease, running=True)
        if not self.objects.recent_failure(3.0):
            self._extend(job_id)

    def _extend(self, job_id: str) -> None:
        """Write a held lease again with a new expiry (and what changed in memory); notes a lost lease."""
        with self.writing:
            with self.lock:
                lease = self.held.get(job_id)
            if lease is None:
                return
            try:
                if not self.enforced and not self._still_ours(lease):
                    raise LeaseLost(job_id)
                written = self._write(replace(lease, expires_at=time.time() + self.ttl), previous=lease)
            except LeaseLost:
                log.warning("job %s: lease lost; another replica runs it now, this one stops", job_id)
                with self.lock:
                    self.held.pop(job_id, None)
                    self.finishing.discard(job_id)
                    self.lost.add(job_id)
                return
            except S3Unavailable as exc:
                log.warning("job %s: lease not renewed (retried): %s", job_id, exc)
                return
            with self.lock:
                current = self.held.get(job_id)
                if current is not None:  # keep an adjust() or mark_running() made meanwhile (written next time)
                    self.held[job_id] = replace(
                        written, crashes=current.crashes, progress=current.progress, running=current.running
                    )

    def _still_ours(self, lease: Lease) -> bool:
        current = self.read(lease.job_id)
        return current is not None and current.nonce == lease.nonce

    def finish(self, job_id: str) -> None:
        with self.lock:
            if job_id in self.held:
                self.finishing.add(job_id)

    def drop_finished(self) -> None:
        """Delete the leases (and markers) of jobs finished here whose uploads are all through."""
        with self.lock:
            done = [job_id for job_id in self.finishing if not self.mirror.pending(job_id)]
        for job_id in done:
            self.drop(job_id)

    def drop(self, job_id: str) -> None:
        """The job is over: delete its lease and markers (the index of unfinished jobs no longer lists it), then the
        objects noted with :meth:`delete_with_lease`."""
        self._delete_quietly([self.layout.lease(job_id), self.layout.handover(job_id), self.layout.cancel(job_id)])
        with self.lock:
            self.held.pop(job_id, None)
            self.finishing.discard(job_id)
            self.cancel.discard(job_id)
            later = self.with_lease.pop(job_id, [])
        if later:
            self._delete_quietly(later)

    def delete_with_lease(self, job_id: str, keys: list[str]) -> bool:
        """Delete ``keys`` when the job's lease goes (:meth:`drop`); False when this replica holds no lease on it."""
        with self.lock:
            if job_id not in self.held:
                return False
            self.with_lease.setdefault(job_id, []).extend(keys)
            return True

    def release(self, job_id: str) -> bool:
        """Hand an unfinished job back (shutting down): another replica may take it at once."""
        with self.writing:  # after a renewal in progress: its ETag is the one to replace
            with self.lock:
                lease = self.held.pop(job_id, None)
                self.finishing.discard(job_id)
            if lease is None:
                return False
            try:
                self._write(replace(lease, owner=None, expires_at=0.0, running=False), previous=lease)
            except (LeaseLost, S3Unavailable) as exc:
                log.warning("job %s: not handed back (%s); it is taken over when its lease expires", job_id, exc)
                return False
        try:
            self.objects.put(self.layout.handover(job_id), b"")
        except Exception as exc:
            log.warning("job %s: handover marker not written: %s", job_id, self.mirror.describe(exc)["message"])
        return True

    def may_write_state(self, job_id: str) -> bool:
        """Whether this replica still owns the job (the outbox's guard for ``job.json``)."""
        return job_id in self.held

    # --- finding work and cancel requests -----------------------------------------------------------
    def candidates(self) -> list[str]:
        """Unfinished jobs that may be free, oldest first: handed back, or not renewed for two periods."""
        leases = self.objects.keys(self.layout.folder("leases"))
        handed = {_job_id(o["Key"]) for o in self.objects.keys(self.layout.folder("handover"))}
        stale = time.time() - 2 * self.ttl / 3
        found = []
        for obj in sorted(leases, key=lambda o: o["LastModified"]):
            job_id = _job_id(obj["Key"])
            if job_id and job_id not in self.held and (job_id in handed or obj["LastModified"].timestamp() < stale):
                found.append(job_id)
        return found

    def check_cancels(self) -> None:
        """Note which held jobs another replica was asked to cancel (one listing for all of them)."""
        if not self.held:
            return
        asked = {_job_id(o["Key"]) for o in self.objects.keys(self.layout.folder("cancel"))}
        with self.lock:
            self.cancel |= asked & set(self.held)

    def request_cancel(self, job_id: str) -> None:
        try:
            self.objects.put(self.layout.cancel(job_id), b"")
        except S3Unavailable:
            raise
        except Exception as exc:
            raise self.objects.unavailable(exc, "asking for a cancel") from None

    def cancel_requested(self, job_id: str) -> bool:
        return self.objects.fetch(self.layout.cancel(job_id)) is not None

    def _delete_quietly(self, keys: list[str]) -> None:
        try:
            self.objects.delete(keys)
        except S3Unavailable as exc:
            log.warning("S3: %s not deleted: %s", ", ".join(keys), exc)


def _job_id(key: str) -> str:
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    return name if is_valid_id(name) else ""
