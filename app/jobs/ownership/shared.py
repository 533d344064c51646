"""Ownership shared by every replica through the bucket: leases (:mod:`app.jobs.ownership.leases`), kept alive by
a keeper thread (:mod:`app.jobs.ownership.keeper`), and the fenced writes of each job's record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from app.jobs.models import JobRecord, log_finished
from app.jobs.ownership.base import Changes, Claimed, Ownership, OwnershipHealth
from app.jobs.ownership.keeper import LeaseKeeper
from app.jobs.ownership.lease import crashes_with_progress
from app.jobs.ownership.leases import LeaseBook, LeaseLost
from app.jobs.repository.base import StorageUnavailable
from app.storage.s3.errors import S3Unavailable
from app.storage.s3.objects import S3Objects

log = logging.getLogger(__name__)


class SharedOwnership(Ownership):
    """Leases in the bucket. ``pending(job_id)`` says whether the job still has uploads waiting (its lease ends only
    once they are through); ``replace_record(job_id, data)`` makes this disk's copy of a record the bucket's (after
    a newer owner's)."""

    others_may_run = True

    def __init__(
        self,
        objects: S3Objects,
        replica: str,
        *,
        lease_s: float,
        scan_s: float,
        hand_over_after_s: float,
        pending: Callable[[str], bool],
        replace_record: Callable[[str, bytes], None],
    ) -> None:
        self.objects = objects
        self.replica = replica
        self.hand_over_after_s = hand_over_after_s
        self.pending = pending
        self.replace_record = replace_record
        self.leases = LeaseBook(objects, replica, lease_s)
        self.ended: set[str] = set()  # jobs whose final record is in the bucket (logged once)
        self.keeper = LeaseKeeper(self.leases, lease_s, scan_s, pending=pending)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.keeper.start()

    def close(self) -> None:
        self.keeper.stop()
        self.leases.end_finished(self.pending)
        handed = [job_id for job_id in list(self.leases.held) if self.leases.release(job_id)]
        if handed:
            log.info("handed %d unfinished job(s) back to the other replicas: %s", len(handed), ", ".join(handed))

    def watch(self, running: Callable[[], Collection[str]]) -> None:
        self.keeper.running = running

    # --- accepting and taking jobs -----------------------------------------------------------------
    def accept(self, record: JobRecord) -> None:
        try:
            self.leases.create(record.id, record.to_json())
        except (S3Unavailable, LeaseLost) as exc:
            raise StorageUnavailable(str(exc)) from None

    def orphans(self) -> list[str]:
        """Jobs handed back or observed expired (memory: the lease keeper observes the bucket)."""
        return self.leases.candidates()

    def takeover_due(self) -> bool:
        return bool(self.leases.candidates())

    def claim(self, job_id: str) -> Claimed | None:
        """The lease (epoch raised), then the record written back naming this owner and epoch (fenced). None (the
        lease given back or ended) when the job is not free, finished, or cannot be read."""
        try:
            lease = self.leases.claim(job_id)
        except S3Unavailable as exc:
            log.warning("job %s: not taken over: %s", job_id, exc)
            return None
        if lease is None:
            return None
        taken: list[Claimed] = []

        def update(body: bytes) -> bytes | None:
            record = JobRecord.from_json(body)
            if record.finished:
                return None
            crashes = crashes_with_progress(lease.crashes, record.pages_done, lease.progress)
            taken.append(Claimed(record, record.owner, crashes, lease.takeovers, lease.epoch))
            record.owner, record.takeovers, record.epoch = self.replica, lease.takeovers, lease.epoch
            record.waiting = None
            return record.to_json()

        try:
            written = self.leases.take_record(job_id, update)
        except (S3Unavailable, ValueError) as exc:
            log.warning("job %s: not taken over: %s", job_id, exc)
            self.leases.release(job_id)
            return None
        if written is None:  # finished, or never completely accepted: the lease is stale
            try:
                self.leases.end(job_id)
            except S3Unavailable as exc:  # left to expire; the next claimant ends it
                log.warning("job %s: stale lease not ended: %s", job_id, exc)
            return None
        claimed = taken[-1]
        self.leases.adjust(job_id, crashes=claimed.crashes, progress=claimed.record.pages_done)
        return claimed

    def note_cancel_requested(self, job_id: str) -> None:
        """A job just taken over: was it asked to be cancelled while nobody ran it? :class:`StorageUnavailable`."""
        try:
            if self.leases.cancel_requested(job_id):
                self.leases.cancel.add(job_id)
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None

    # --- running -----------------------------------------------------------------------------------
    def changes(self, running: Collection[str]) -> Changes:
        lost, cancel = self.leases.ownership(running)
        return Changes(lost=lost, cancel=cancel)

    def page_starting(self, job_id: str) -> None:
        try:
            self.leases.mark_running(job_id)
        except Exception:  # the page goes on: the flag is written with the next renewal
            log.exception("job %s: its lease was not marked running", job_id)

    def finish(self, record: JobRecord) -> None:
        """The lease ends once the job's uploads are through (with it the bucket's copy of the document, with
        ``KEEP_JOB_INPUTS=false``); "job ... succeeded" is logged once its final record is in the bucket."""
        if not record.keep_input:
            key = self.objects.layout.input(record.id)
            if not self.leases.delete_with_lease(record.id, [key]):
                try:
                    self.objects.delete([key])
                except S3Unavailable as exc:
                    log.warning("S3: %s not deleted: %s", key, exc)
        self.leases.finish(record.id)

    def hand_back(self, job_id: str) -> None:
        if self.leases.release(job_id):
            log.info("job %s handed back to the other replicas", job_id)

    def request_cancel(self, job_id: str) -> None:
        try:
            self.leases.request_cancel(job_id)
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None

    # --- the record, fenced ------------------------------------------------------------------------
    def may_write_record(self, job_id: str) -> bool:
        return self.leases.may_write_record(job_id)

    def write_record(self, job_id: str, body: bytes) -> bool:
        """The outbox's upload of ``job.json``: fenced by this owner's epoch. False when a newer owner holds the job:
        this disk's copy then becomes the bucket's, so that this replica reports what that owner reports."""
        fenced = self.leases.write_record(job_id, body)
        if fenced is None:
            try:
                record = JobRecord.from_json(body)
            except ValueError:
                return True
            if record.finished and record.id not in self.ended:
                # The outbox reads job.json when its turn comes, so the final record may be uploaded twice.
                if len(self.ended) >= 10_000:  # bounded: only the last moments of a job matter
                    self.ended.clear()
                self.ended.add(record.id)
                log_finished(record)
            return True
        if fenced.current is not None:
            self.replace_record(job_id, fenced.current)
        return False

    # --- for retention and /health -------------------------------------------------------------------
    def end_finished(self) -> None:
        self.leases.end_finished(self.pending)

    def held(self) -> Collection[str]:
        with self.leases.lock:
            return set(self.leases.held)

    def health(self) -> OwnershipHealth:
        return OwnershipHealth(
            conditional_writes=self.objects.conditions,
            replica=str(self.replica),
            jobs_held=len(self.leases.held),
            jobs_taken_over=self.leases.claimed,
        )
