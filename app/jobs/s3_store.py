"""Jobs shared by every replica through one bucket; the local disk is this replica's working copy.

- **Accepted means durable.** :meth:`S3JobStore.create` returns only once the document, the record and the lease
  are in the bucket; when S3 cannot be reached it keeps nothing and raises :class:`StorageUnavailable` (the API
  answers 503 with ``Retry-After``): a job that only this container's disk knows would be lost with it.
- **Progress** (pages, records, results) is written locally, then uploaded in the background through the durable
  outbox (:mod:`app.storage.s3.mirror`). A page lost with a container is simply recognised again by the next owner: its
  key is fixed by its number.
- **Ownership** lives in leases (:mod:`app.jobs.ownership`): a keeper thread renews this replica's leases, watches
  the others', notes cancel requests made through other replicas, and ends the leases of jobs whose last upload is
  through. Every upload of ``job.json`` is a write fenced by the lease's epoch (``If-Match`` on the version this
  owner wrote last), so a replica that lost a job never overwrites the new owner's record.
- **Final means stored.** A job's final status is shown (here and so on every replica) only once its ``job.json``
  is in the bucket; until then it is ``running`` with ``waiting`` saying that the result is being stored.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from app.jobs.local_store import LocalJobStore
from app.jobs.models import JobError, JobRecord, PageOutcome, log_finished
from app.jobs.ownership.keeper import LeaseKeeper
from app.jobs.ownership.lease import Lease, crashes_with_progress
from app.jobs.ownership.leases import LeaseBook, LeaseLost
from app.jobs.store import Ownership, StorageUnavailable
from app.jobs.takeover_policy import document_lost, poison
from app.schemas import DocumentResult, LocalStorage, ResultStorage, S3Storage
from app.settings import Settings
from app.storage.local import atomic_write, result_files
from app.storage.rag_export import RagExport
from app.storage.s3.errors import S3Unavailable
from app.storage.s3.mirror import S3Mirror

log = logging.getLogger(__name__)

_FAIL_FAST_S = 3.0  # after a failed direct call, refuse new jobs at once for this long


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


class S3JobStore(LocalJobStore):
    """:class:`LocalJobStore` plus the bucket: any replica reports, cancels and continues any job."""

    shared = True

    def __init__(self, settings: Settings, root: Path, replica: str) -> None:
        super().__init__(root)
        self.settings = settings
        self.replica = replica
        self.mirror = S3Mirror(settings, root)
        self.layout = self.mirror.layout
        self.objects = self.mirror.objects
        self.leases = LeaseBook(self.objects, replica, settings.job_lease_s)
        self.mirror.outbox.state_guard = self.leases.may_write_record
        self.mirror.state_writer = self._write_state
        self.taken: set[str] = set()  # jobs claimed here: their pages may be in the bucket only
        self.rag_export = RagExport(settings, self.mirror, root)
        self.keeper = LeaseKeeper(
            self.leases, settings.job_lease_s, settings.job_scan_interval_s, pending=self.mirror.pending
        )

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.mirror.start()
        self.keeper.start()

    def close(self, timeout: float) -> None:
        """Upload what is pending (at most ``timeout`` s, minus a moment to hand jobs back), then hand every job
        still held back to the other replicas and stop."""
        deadline = time.monotonic() + timeout
        flushed = self.mirror.flush(max(0.0, timeout - 2.0))
        self.keeper.stop()
        self.leases.end_finished(self.mirror.pending)
        handed = [job_id for job_id in list(self.leases.held) if self.leases.release(job_id)]
        if handed:
            log.info("handed %d unfinished job(s) back to the other replicas: %s", len(handed), ", ".join(handed))
        if not flushed:
            log.warning("S3: the outbox was not empty within SHUTDOWN_GRACE_S; the next owner redoes that work")
        self.mirror.close(max(0.5, deadline - time.monotonic()))

    def health(self) -> dict[str, Any]:
        return {
            **self.mirror.health(),
            "conditional_writes": self.objects.conditions,
            "replica": self.replica,
            "jobs_held": len(self.leases.held),
            "jobs_taken_over": self.leases.claimed,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "uploaded": self.mirror.uploaded,
            "failures": self.mirror.failures,
            "pending": self.mirror.outbox.stats[0],
            "leases": len(self.leases.held),
            "takeovers": self.leases.claimed,
        }

    # --- writing ---------------------------------------------------------------------------------
    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        record.epoch = 1  # the first owner's; every claim raises it (see app.jobs.ownership)
        super().create(record, upload, copy)
        objects = self.objects
        try:
            failure = objects.recent_failure(_FAIL_FAST_S)
            if failure:
                raise S3Unavailable(failure)
            objects.upload(self.local_input(record.id), self.layout.input(record.id))
            self.leases.create(record.id, record.to_json())
        except (S3Unavailable, LeaseLost) as exc:
            self.delete_local(record.id)
            self._delete_quietly([self.layout.input(record.id), self.layout.job(record.id)])
            raise StorageUnavailable(
                f"{exc}; the document was not accepted, since a job that only this container's disk knows would be "
                "lost when the container is replaced. Retry shortly."
            ) from None

    def save(self, record: JobRecord) -> None:
        super().save(record)
        self.mirror.job_state(record.id, self.record_path(record.id))

    def save_page(self, record: JobRecord, outcome: PageOutcome) -> None:
        super().save_page(record, outcome)
        self.mirror.page(record.id, outcome.number, self.page_path(record.id, outcome.number))

    def save_result(self, record: JobRecord, result: DocumentResult, result_json: bytes, markdown: str) -> None:
        super().save_result(record, result, result_json, markdown)
        self.mirror.result(record.id, record.result_dir)  # before job.json says "succeeded": see the outbox
        record.s3_mirrored = True
        record.rag_export_key = self.rag_export.export(record, result)  # after result.json, in the same entry

    def discard_input(self, record: JobRecord) -> None:
        """The local copy now; the bucket's with the lease, once ``job.json`` says the job ended (until then another
        replica may have to finish the job and need the document)."""
        super().discard_input(record)
        if not self.leases.delete_with_lease(record.id, [self.layout.input(record.id)]):
            self._delete_quietly([self.layout.input(record.id)])

    # --- reading ---------------------------------------------------------------------------------
    def load(self, job_id: str) -> JobRecord | None:
        """The local record when it is final and in the bucket, else the bucket's (the job may run elsewhere now).

        A final record not yet in the bucket reads as ``running`` (its result is being stored): no replica ever
        shows a final status that another replica cannot show too. An unfinished local record is an old copy (the
        job runs elsewhere, or nowhere until it is taken over): when the bucket cannot be read, that is a 503, not
        a status that may be behind what was shown before."""
        local = self.load_local(job_id)
        if local is not None and local.finished and self.final_stored(job_id):
            return local
        try:
            stored = self.objects.get(self.layout.job(job_id))
        except S3Unavailable as exc:
            if local is not None and local.finished:
                return local.storing()
            raise StorageUnavailable(str(exc)) from None
        record = None
        if stored is not None:
            try:
                record = JobRecord.from_json(stored.body)
            except ValueError:
                log.error("job %s: its record in the bucket is unreadable", job_id)
        if local is not None and local.finished and (record is None or not record.finished):
            return local.storing()
        return record if record is not None else local

    def final_stored(self, job_id: str) -> bool:
        """Whether nothing of the job waits for upload (a final ``job.json`` is the last upload of a job)."""
        return not self.mirror.pending(job_id)

    def done_pages(self, record: JobRecord) -> set[int]:
        """Local pages; for a job taken over from another replica, also those in the bucket."""
        done = super().done_pages(record)
        if record.id not in self.taken:
            return done
        try:
            keys = self.objects.keys(self.layout.pages(record.id))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        for key in keys:
            name = key.rsplit("/", 1)[-1].removesuffix(".json")
            if name.isdigit():
                done.add(int(name))
        return done

    def load_page(self, record: JobRecord, number: int) -> PageOutcome:
        try:
            return super().load_page(record, number)
        except FileNotFoundError:
            pass
        try:
            data = self.objects.fetch(self.layout.page(record.id, number))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        if data is None:
            raise FileNotFoundError(f"page {number} of job {record.id}")
        atomic_write(self.page_path(record.id, number), data)  # a local copy for the next read
        return PageOutcome.from_json(number, data)

    def input_path(self, record: JobRecord) -> Path | None:
        local = super().input_path(record)
        if local is not None:
            return local
        try:
            fetched = self.objects.download(self.layout.input(record.id), self.local_input(record.id))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        return self.local_input(record.id) if fetched else None

    def read_result(self, record: JobRecord) -> tuple[bytes, Path | None] | None:
        local = super().read_result(record)
        if local is not None or not record.s3_mirrored:
            return local
        try:
            data = self.objects.fetch(self.layout.result(record.result_dir, "result.json"))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        return None if data is None else (data, None)

    def result_file(self, record: JobRecord, name: str) -> Path | None:
        local = super().result_file(record, name)
        if local is not None or not record.s3_mirrored:
            return local
        target = self.result_folder(record) / name
        try:
            return target if self.objects.download(self.layout.result(record.result_dir, name), target) else None
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None

    async def result_storage(self, record: JobRecord, folder: Path | None, wait: float) -> ResultStorage:
        local = None
        if folder is not None:
            local = LocalStorage(dir=record.result_dir, files=result_files(folder))
        rag_export = self.rag_export.describe(record)
        if not record.s3_mirrored:
            return ResultStorage(local=local, s3=S3Storage(status="disabled"), rag_export=rag_export)
        if local is not None:
            keys = [self.layout.result(record.result_dir, name) for name in local.files]
        else:
            keys = self.objects.list_result(record.result_dir)
        uploaded = await self.mirror.wait_result(record.id, wait)
        s3 = S3Storage(status="uploaded" if uploaded else "pending", bucket=self.mirror.bucket, keys=keys)
        return ResultStorage(local=local, s3=s3, rag_export=rag_export)

    # --- ownership -------------------------------------------------------------------------------
    def orphans(self) -> list[str]:
        """Jobs handed back or observed expired (memory: the lease keeper observes the bucket)."""
        return self.leases.candidates()

    def takeover_due(self) -> bool:
        return bool(self.leases.candidates())

    def watch(self, running: Callable[[], Collection[str]]) -> None:
        self.keeper.running = running

    def claim(self, job_id: str) -> JobRecord | None:
        """Take over a free job: lease first (epoch raised), then its record (written back naming this owner, fenced)
        and its document; a job that keeps stopping the replicas that run it (a poison document) fails after
        ``MAX_JOB_TAKEOVERS`` crashes without progress, and a job whose document is gone with pages still to do
        fails too (no replica could go on with it)."""
        try:
            lease = self.leases.claim(job_id)
        except S3Unavailable as exc:
            log.warning("job %s: not taken over: %s", job_id, exc)
            return None
        if lease is None:
            return None
        taken = self._take_record(job_id, lease)
        if taken is None:
            return None
        record, previous, crashes = taken
        self.leases.adjust(job_id, crashes=crashes, progress=record.pages_done)
        (self.folder(job_id) / "pages").mkdir(parents=True, exist_ok=True)
        LocalJobStore.save(self, record)  # the bucket names the new owner already
        error = poison(crashes, self.settings.max_job_takeovers)
        if error is not None or not self._can_go_on(record):
            if error is not None:
                self._fail(record, error)
            return None
        log.info(
            "job %s taken over from %s (takeover %d, epoch %d, %d/%d pages done, %d crash(es) in a row without "
            "progress)",
            job_id,
            previous or "a stopped replica",
            lease.takeovers,
            lease.epoch,
            record.pages_done,
            len(record.pages),
            crashes,
        )
        return record

    def _take_record(self, job_id: str, lease: Lease) -> tuple[JobRecord, str | None, int] | None:
        """Write the job's record back naming this owner and epoch (fenced): the record, its previous owner and the
        crashes without progress; None (the lease given up) when it is finished or cannot be read."""
        taken: list[tuple[JobRecord, str | None, int]] = []

        def update(body: bytes) -> bytes | None:
            record = JobRecord.from_json(body)
            if record.finished:
                return None
            crashes = crashes_with_progress(lease.crashes, record.pages_done, lease.progress)
            taken.append((record, record.owner, crashes))
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
        return taken[-1]

    def _can_go_on(self, record: JobRecord) -> bool:
        """Fetch the document (unless every page is stored already) and note a cancel asked for meanwhile. False when
        the job is handed back (S3 failed) or failed (its document is gone with pages still to do)."""
        self.taken.add(record.id)
        try:
            has_input = self.input_path(record) is not None
            complete = not has_input and set(record.pages) <= self.done_pages(record)
            if self.leases.cancel_requested(record.id):
                self.leases.cancel.add(record.id)
        except (StorageUnavailable, S3Unavailable) as exc:
            log.warning("job %s: not taken over: %s", record.id, exc)
            self.taken.discard(record.id)
            self.leases.release(record.id)
            return False
        error = document_lost(has_input, complete)
        if error is not None:
            self._fail(record, error)
        return error is None

    def _fail(self, record: JobRecord, error: JobError) -> None:
        """A taken-over job that cannot run (see :mod:`app.jobs.takeover_policy`) fails once, here."""
        record.fail(error)
        log.error("job %s failed: %s", record.id, error.message)
        self.save(record)
        self.finish(record)

    def ownership(self, running: Collection[str]) -> Ownership:
        lost, cancel = self.leases.ownership(running)
        return Ownership(lost=lost, cancel=cancel)

    def page_starting(self, record: JobRecord) -> None:
        try:
            self.leases.mark_running(record.id)
        except Exception:  # the page goes on: the flag is written with the next renewal
            log.exception("job %s: its lease was not marked running", record.id)

    def finish(self, record: JobRecord) -> None:
        """The lease ends once the job's uploads are through; "job ... succeeded" is logged once its final record
        is in the bucket (:meth:`_write_state`)."""
        self.leases.finish(record.id)

    def _write_state(self, job_id: str, body: bytes) -> bool:
        """The outbox's upload of ``job.json``: fenced by this owner's epoch. False when a newer owner holds the job:
        the local copy then becomes the bucket's, so that this replica reports what that owner reports."""
        fenced = self.leases.write_record(job_id, body)
        if fenced is None:
            try:
                record = JobRecord.from_json(body)
            except ValueError:
                return True
            if record.finished:
                log_finished(record)
            return True
        if fenced.current is not None:
            atomic_write(self.record_path(job_id), fenced.current)
        return False

    def hand_back(self, record: JobRecord) -> None:
        if self.leases.release(record.id):
            log.info("job %s handed back to the other replicas", record.id)

    def request_cancel(self, record: JobRecord) -> None:
        try:
            self.leases.request_cancel(record.id)
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None

    # --- retention -------------------------------------------------------------------------------
    def delete_older_than(self, cutoff: datetime, keep: Collection[str]) -> int:
        """Local copies only: objects in the bucket are removed by the bucket's lifecycle rule (see the guide). Jobs
        whose lease this replica holds are kept, except finished ones whose uploads are through (their leases go
        first, as the renewal would drop them a little later)."""
        self.leases.end_finished(self.mirror.pending)
        with self.leases.lock:
            held = set(self.leases.held)
        return super().delete_older_than(cutoff, set(keep) | held)

    def free_space(self, needed: int, keep: Collection[str]) -> tuple[int, int]:
        """Kept documents first (they are in the bucket too), then the local copies of finished jobs whose every
        file is in the bucket (they are read from there afterwards), oldest first."""
        deleted, freed = super().free_space(needed, keep)
        finished = []
        for job_id in self.ids():
            record = None if job_id in keep or self.mirror.pending(job_id) else self.load_local(job_id)
            if record is not None and record.finished and record.s3_mirrored:
                finished.append((record.finished_at or record.created_at, record))
        for _, record in sorted(finished, key=lambda item: item[0]):
            if freed >= needed:
                break
            size = _folder_size(self.result_folder(record)) + _folder_size(self.folder(record.id))
            shutil.rmtree(self.result_folder(record), ignore_errors=True)
            self.delete_local(record.id)
            deleted, freed = deleted + 1, freed + size
        return deleted, freed

    def delete_result(self, record: JobRecord) -> None:
        super().delete_result(record)
        self.rag_export.forget(record)

    def _delete_quietly(self, keys: list[str]) -> None:
        try:
            self.objects.delete(keys)
        except S3Unavailable as exc:
            log.warning("S3: %s not deleted: %s", ", ".join(keys), exc)
