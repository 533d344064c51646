"""Leases in the bucket: which replica runs which unfinished job; the record writes they fence.

The protocol (every write of ownership state is conditional; see :mod:`app.storage.s3.objects`):

- **Accept** (:meth:`LeaseBook.create`): ``job.json`` and the lease are created with ``If-None-Match: *``; epoch 1.
- **Renew** (keeper thread, every ``JOB_LEASE_S / 3``): ``If-Match`` on the version this replica wrote last, with
  ``beat`` raised. A refused renewal means another replica has the job: it is *lost* here (the runner stops and
  writes nothing more). A lease this replica holds for a job it no longer runs is handed back (liveness).
- **Observe** (keeper thread): one listing of the leases gives their ETags; :class:`ExpiryObserver` says which have
  stayed unchanged for ``JOB_LEASE_S`` of this replica's own time.
- **Claim** (:meth:`LeaseBook.claim`): a lease handed back (no owner) or observed expired is replaced with
  ``If-Match`` on the version read, with ``epoch`` raised; of several claimants exactly one wins. Then the record is
  taken (:meth:`LeaseBook.take_record`): read, and written back with the new epoch and owner, ``If-Match`` on what was
  read.
- **Fence** (:mod:`app.jobs.ownership.records`): every later write of ``job.json`` is ``If-Match`` on the version
  this owner wrote last; a newer owner's write ends an older owner's (it learns that it lost the job).
- **End** (:meth:`LeaseBook.end`): the lease is replaced by an ``ended`` version (``If-Match``), then deleted
  (``If-Match`` on that version); a replica that lost the job cannot delete the new owner's lease.
- **Hand back** (:meth:`LeaseBook.release`): ``owner`` set to null (``If-Match``) and a handover marker written, so
  another replica takes the job at its next scan.

A write whose answer was lost (a timeout) may still land: after a refused write the lease is read back, and a
version of this replica's claim (its nonce and epoch) is adopted.

Buckets that ignore the conditions (:meth:`Bucket.detect_conditions`): the conditions are checked with a read just
before each write, and a claim holds only if, after ``settle_s``, the lease read back is still this replica's.

A takeover after a crash counts against the job (``MAX_JOB_TAKEOVERS``) only when the lease says that the job's
pages were being recognised (:func:`~app.jobs.ownership.lease.crashes_after_claim`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import replace

from app.jobs.ownership.bucket import Bucket
from app.jobs.ownership.lease import Lease, crashes_after_claim
from app.jobs.ownership.observer import ExpiryObserver
from app.jobs.ownership.records import Fenced, RecordFence
from app.storage.local import is_valid_id
from app.storage.s3.errors import Conflict, S3Unavailable

log = logging.getLogger(__name__)

UNRUN_GRACE_S = 5.0  # a lease held this long for a job that runs nowhere here is handed back


class LeaseLost(Exception):
    """The lease changed since this replica wrote it: another replica holds the job."""


class LeaseBook:
    """This replica's leases and the record versions they fence (blocking calls; thread-safe)."""

    def __init__(
        self,
        bucket: Bucket,
        replica: str,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = bucket
        self.layout = bucket.layout
        self.replica = replica
        self.ttl = ttl
        self.settle_s = min(2.0, ttl / 5)
        self.clock = clock
        self.sleep = sleep
        self.observer = ExpiryObserver(ttl)
        self.handed: set[str] = set()  # handover markers seen at the last observation
        self.held: dict[str, Lease] = {}
        self.fence = RecordFence(bucket, self._lose)
        self.claimed_at: dict[str, float] = {}
        self.finishing: set[str] = set()  # finished here; the lease ends once the job's uploads are through
        self.lost: set[str] = set()  # taken by another replica since this replica claimed them
        self.cancel: set[str] = set()
        self.with_lease: dict[str, list[str]] = {}  # objects to delete when a job's lease ends
        self.claimed = 0  # jobs taken over by this replica since start
        self.lock = threading.RLock()  # memory state
        self.writing = threading.Lock()  # one lease write at a time (each needs the previous one's ETag)

    # --- reading ------------------------------------------------------------------------------------
    def read(self, job_id: str) -> Lease | None:
        found = self.bucket.get(self.layout.lease(job_id))
        if found is None:
            return None
        try:
            return Lease.from_json(found.body, found.etag)
        except ValueError:
            log.error("job %s: its lease is unreadable; treated as expired", job_id)
            return Lease(job_id, owner="?", etag=found.etag)

    def _put_lease(self, lease: Lease, previous: Lease | None) -> Lease:
        """Write ``lease`` over ``previous`` (create when None). :class:`LeaseLost`, :class:`S3Unavailable`."""
        key = self.layout.lease(lease.job_id)
        try:
            if previous is None:
                etag = self.bucket.put_if_absent(key, lease.to_json())
            else:
                etag = self.bucket.put_if_match(key, lease.to_json(), previous.etag or "")
        except Conflict:
            current = self.read(lease.job_id)
            if current is None or current.nonce != lease.nonce or current.epoch != lease.epoch:
                raise LeaseLost(lease.job_id) from None
            # Written by this claim (only it writes its nonce): an earlier write whose answer was lost landed.
            log.info("job %s: an earlier write of the lease had landed after all", lease.job_id)
            if current.same_write(lease):
                return current
            try:
                etag = self.bucket.put_if_match(key, lease.to_json(), current.etag or "")
            except Conflict:
                raise LeaseLost(lease.job_id) from None
        return replace(lease, etag=etag)

    # --- accepting and claiming --------------------------------------------------------------------
    def create(self, job_id: str, record: bytes) -> None:
        """Store the record and the lease of a job accepted here. :class:`S3Unavailable`, or :class:`LeaseLost`."""
        try:
            record_etag = self.bucket.put_if_absent(self.layout.job(job_id), record)
        except Conflict:
            raise LeaseLost(job_id) from None
        lease = Lease(job_id, self.replica, epoch=1, expires_at=time.time() + self.ttl, nonce=uuid.uuid4().hex)
        written = self._put_lease(lease, None)
        with self.lock:
            self.held[job_id] = written
            self.fence.start(job_id, record_etag)
            self.claimed_at[job_id] = self.clock()
            self.lost.discard(job_id)

    def free(self, lease: Lease) -> bool:
        """Whether ``lease`` may be taken: handed back, or observed unchanged for the whole lease period."""
        if lease.ended or (lease.mine(self.replica) and lease.job_id in self.held):
            return False
        if lease.owner is None:
            return True
        with self.lock:
            expired = lease.job_id in self.observer.expired(self.clock())
            return expired and self.observer.version(lease.job_id) == lease.etag

    def claim(self, job_id: str) -> Lease | None:
        """Take a free job: the new lease (epoch raised), or None when it is held, gone, or another replica won."""
        current = self.read(job_id)
        if current is None or job_id in self.held:
            return None
        if current.ended:
            self._end_stale(current)
            return None
        if not self.free(current):
            return None
        lease = Lease(
            job_id,
            self.replica,
            epoch=current.epoch + 1,
            expires_at=time.time() + self.ttl,
            takeovers=current.takeovers + 1,
            crashes=crashes_after_claim(current),
            progress=current.progress,
            nonce=uuid.uuid4().hex,
        )
        try:
            written = self._put_lease(lease, current)
        except LeaseLost:
            return None
        if not self.bucket.enforced:
            self.sleep(self.settle_s)
            now = self.read(job_id)
            if now is None or not now.same_write(lease):
                return None
            written = now
        with self.lock:
            self.held[job_id] = written
            self.claimed_at[job_id] = self.clock()
            self.lost.discard(job_id)
            self.handed.discard(job_id)
            self.observer.forget(job_id)
            self.claimed += 1
        self._delete_quietly([self.layout.handover(job_id)])
        return written

    def take_record(self, job_id: str, update: Callable[[bytes], bytes | None]) -> bytes | None:
        """See :meth:`RecordFence.take`."""
        return self.fence.take(job_id, update)

    def write_record(self, job_id: str, body: bytes) -> Fenced | None:
        """See :meth:`RecordFence.write`."""
        return self.fence.write(job_id, body)

    def may_write_record(self, job_id: str) -> bool:
        """Whether this replica holds a record version of the job (memory only; the write itself is conditional)."""
        return self.fence.holds(job_id)

    # --- keeping leases -----------------------------------------------------------------------------
    def renew(self, running: Collection[str]) -> bool:
        """Extend every held lease; hand back those whose job runs nowhere here (and is not finishing). False when S3
        failed (the keeper tries again sooner)."""
        now = self.clock()
        with self.lock:
            held = list(self.held)
            idle = [
                job_id
                for job_id in held
                if job_id not in running
                and job_id not in self.finishing
                and now - self.claimed_at.get(job_id, now) >= UNRUN_GRACE_S
            ]
        ok = True
        for job_id in held:
            try:
                if job_id in idle:
                    log.warning("job %s: its lease was held with no runner here; handed back", job_id)
                    self.release(job_id)
                else:
                    self._extend(job_id)
            except S3Unavailable as exc:
                log.warning("job %s: lease not renewed (retried): %s", job_id, exc)
                ok = False
        return ok

    def mark_running(self, job_id: str) -> None:
        """A page of the held job is about to be recognised here for the first time: say so in its lease at once,
        so that a crash from now on counts against the job. While S3 is failing it goes with the next renewal."""
        with self.lock:
            lease = self.held.get(job_id)
            if lease is None or lease.running:
                return
            self.held[job_id] = replace(lease, running=True)
        if not self.bucket.recent_failure(3.0):
            self._extend(job_id)

    def adjust(self, job_id: str, *, crashes: int, progress: int) -> None:
        """Correct a held lease once the job's record is read (written with the next renewal)."""
        with self.lock:
            lease = self.held.get(job_id)
            if lease is not None:
                self.held[job_id] = replace(lease, crashes=crashes, progress=progress)

    def _extend(self, job_id: str) -> None:
        """Write a held lease again (beat raised, and what changed in memory); notes a lost lease."""
        with self.writing:
            with self.lock:
                lease = self.held.get(job_id)
            if lease is None:
                return
            bumped = replace(lease, beat=lease.beat + 1, expires_at=time.time() + self.ttl)
            try:
                if not self.bucket.enforced:
                    current = self.read(job_id)
                    if current is None or current.nonce != lease.nonce:
                        raise LeaseLost(job_id)
                written = self._put_lease(bumped, lease)
            except LeaseLost:
                log.warning("job %s: lease lost; another replica runs it now, this one stops", job_id)
                self._lose(job_id)
                return
            with self.lock:
                if job_id in self.held:
                    self.held[job_id] = written

    def _lose(self, job_id: str) -> None:
        with self.lock:
            if self.held.pop(job_id, None) is not None or self.fence.holds(job_id):
                self.lost.add(job_id)
            self.fence.forget(job_id)
            self.finishing.discard(job_id)
            self.claimed_at.pop(job_id, None)

    # --- ending and handing back --------------------------------------------------------------------
    def finish(self, job_id: str) -> None:
        """The job has finished here: its lease ends once its uploads are through (:meth:`end_finished`)."""
        with self.lock:
            if job_id in self.held:
                self.finishing.add(job_id)

    def end_finished(self, pending: Callable[[str], bool]) -> None:
        """End the leases of jobs finished here whose uploads (``pending``) are all through."""
        with self.lock:
            done = [job_id for job_id in self.finishing if not pending(job_id)]
        for job_id in done:
            try:
                self.end(job_id)
            except S3Unavailable as exc:
                log.warning("job %s: lease not ended yet (retried): %s", job_id, exc)

    def end(self, job_id: str) -> None:
        """The job is over: mark the lease ended and delete it (both conditional), then its markers and the objects
        noted with :meth:`delete_with_lease`. A lease another replica holds now is left alone."""
        with self.writing:
            with self.lock:
                lease = self.held.get(job_id)
            if lease is not None:
                try:
                    ended = self._put_lease(replace(lease, ended=True, beat=lease.beat + 1), lease)
                    self.bucket.delete_if_match(self.layout.lease(job_id), ended.etag or "")
                except (LeaseLost, Conflict):
                    log.info("job %s: its lease is another replica's now; left to it", job_id)
                    self._lose(job_id)
                    return
        with self.lock:
            self.held.pop(job_id, None)
            self.fence.forget(job_id)
            self.finishing.discard(job_id)
            self.cancel.discard(job_id)
            self.claimed_at.pop(job_id, None)
            later = self.with_lease.pop(job_id, [])
        self._delete_quietly([self.layout.handover(job_id), self.layout.cancel(job_id), *later])

    def _end_stale(self, lease: Lease) -> None:
        """A lease left ``ended`` (its owner stopped between the two steps of :meth:`end`): delete it."""
        with contextlib.suppress(Conflict, S3Unavailable):
            self.bucket.delete_if_match(self.layout.lease(lease.job_id), lease.etag or "")

    def delete_with_lease(self, job_id: str, keys: list[str]) -> bool:
        """Delete ``keys`` when the job's lease ends; False when this replica holds no lease on it."""
        with self.lock:
            if job_id not in self.held:
                return False
            self.with_lease.setdefault(job_id, []).extend(keys)
            return True

    def release(self, job_id: str) -> bool:
        """Hand an unfinished job back: another replica (or this one, later) may take it at once."""
        with self.writing:
            with self.lock:
                lease = self.held.pop(job_id, None)
                self.fence.forget(job_id)
                self.finishing.discard(job_id)
                self.claimed_at.pop(job_id, None)
            if lease is None:
                return False
            try:
                self._put_lease(replace(lease, owner=None, running=False, beat=lease.beat + 1), lease)
            except (LeaseLost, S3Unavailable) as exc:
                log.warning("job %s: not handed back (%s); it is taken over when its lease expires", job_id, exc)
                return False
        try:
            self.bucket.put(self.layout.handover(job_id), b"", "application/octet-stream")
        except S3Unavailable as exc:
            log.warning("job %s: handover marker not written: %s", job_id, exc)
        return True

    # --- finding work and cancel requests -----------------------------------------------------------
    def observe(self) -> None:
        """List the leases and handover markers (one listing each) and update the observations."""
        try:
            leases = self.bucket.listing(self.layout.folder("leases"))
            handed = self.bucket.listing(self.layout.folder("handover"))
        except S3Unavailable:
            with self.lock:
                self.observer.failed()
            raise
        versions = {_job_id(item.key): item.etag for item in leases}
        versions.pop("", None)
        with self.lock:
            self.observer.observe(versions, self.clock())
            self.handed = {_job_id(item.key) for item in handed} & set(versions)

    def candidates(self) -> list[str]:
        """Jobs this replica may try to take now (memory only): handed back, or observed expired."""
        with self.lock:
            found = sorted(self.handed) + self.observer.expired(self.clock())
            return [job_id for job_id in dict.fromkeys(found) if job_id not in self.held]

    def check_cancels(self) -> None:
        """Note which held jobs another replica was asked to cancel (one listing for all of them)."""
        if not self.held:
            return
        asked = {_job_id(item.key) for item in self.bucket.listing(self.layout.folder("cancel"))}
        with self.lock:
            self.cancel |= asked & set(self.held)

    def request_cancel(self, job_id: str) -> None:
        self.bucket.put(self.layout.cancel(job_id), b"", "application/octet-stream")

    def cancel_requested(self, job_id: str) -> bool:
        return self.bucket.get(self.layout.cancel(job_id)) is not None

    def ownership(self, running: Collection[str]) -> tuple[set[str], set[str]]:
        """(lost, cancel requested) among the ``running`` jobs (memory only)."""
        ids = set(running)
        with self.lock:
            return self.lost & ids, self.cancel & ids

    def _delete_quietly(self, keys: list[str]) -> None:
        try:
            self.bucket.delete(keys)
        except S3Unavailable as exc:
            log.warning("S3: %s not deleted: %s", ", ".join(keys), exc)


def _job_id(key: str) -> str:
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    return name if is_valid_id(name) else ""
