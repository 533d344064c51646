"""Jobs shared by every replica through one bucket; the local disk is this replica's working copy.

- **Accepted means durable.** :meth:`S3JobStore.create` returns only once the document, the record and the lease
  are in the bucket; when S3 cannot be reached it keeps nothing and raises :class:`StorageUnavailable` (the API
  answers 503 with ``Retry-After``): a job that only this container's disk knows would be lost with it.
- **Progress** (pages, records, results) is written locally, then uploaded in the background through the durable
  outbox (:mod:`app.storage.s3`). A page lost with a container is simply recognised again by the next owner: its
  key is fixed by its number.
- **Ownership** lives in leases (:mod:`app.jobs.leases`): a keeper thread (:mod:`app.jobs.lease_keeper`) renews
  this replica's leases, notes cancel requests made through other replicas, and drops the leases of jobs whose
  last upload is through.
  ``job.json`` is uploaded only while this replica holds the job, so a replica that lost a job never overwrites
  the new owner's progress.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from app.jobs.lease_keeper import LeaseKeeper
from app.jobs.leases import Lease, LeaseBook, LeaseLost
from app.jobs.local_store import LocalJobStore
from app.jobs.models import JobError, JobRecord, PageOutcome
from app.jobs.store import Ownership, StorageUnavailable
from app.schemas import DocumentResult, LocalStorage, ResultStorage, S3Storage
from app.settings import Settings
from app.storage.local import atomic_write, result_files
from app.storage.rag_export import RagExport
from app.storage.s3 import S3Mirror
from app.storage.s3_client import S3Unavailable

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
        self.leases = LeaseBook(self.mirror, replica, settings.job_lease_s)
        self.mirror.outbox.state_guard = self.leases.may_write_state
        self.layout = self.mirror.layout
        self.objects = self.mirror.objects
        self.taken: set[str] = set()  # jobs claimed here: their pages may be in the bucket only
        self.rag_export = RagExport(settings, self.mirror, root)
        self.keeper = LeaseKeeper(self.leases, settings.job_lease_s)

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
        self.leases.drop_finished()
        handed = [job_id for job_id in list(self.leases.held) if self.leases.release(job_id)]
        if handed:
            log.info("handed %d unfinished job(s) back to the other replicas: %s", len(handed), ", ".join(handed))
        if not flushed:
            log.warning("S3: the outbox was not empty within SHUTDOWN_GRACE_S; the next owner redoes that work")
        self.mirror.close(max(0.5, deadline - time.monotonic()))

    def health(self) -> dict[str, Any]:
        return {
            **self.mirror.health(),
            "conditional_writes": self.leases.conditional,
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
        super().create(record, upload, copy)
        objects = self.objects
        try:
            failure = objects.recent_failure(_FAIL_FAST_S)
            if failure:
                raise S3Unavailable(failure)
            objects.upload(self.local_input(record.id), self.layout.input(record.id))
            try:
                objects.put(self.layout.job(record.id), record.to_json(), "application/json")
            except S3Unavailable:
                raise
            except Exception as exc:
                raise objects.unavailable(exc, "storing the job") from None
            self.leases.create(record.id)
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
        """The local record when it is final, else the bucket's (the job may run elsewhere now)."""
        local = self.load_local(job_id)
        if local is not None and local.finished:
            return local
        try:
            data = self.objects.fetch(self.layout.job(job_id))
        except S3Unavailable as exc:
            if local is not None:
                return local
            raise StorageUnavailable(str(exc)) from None
        if data is None:
            return local
        try:
            return JobRecord.from_json(data)
        except ValueError:
            log.error("job %s: its record in the bucket is unreadable", job_id)
            return local

    def done_pages(self, record: JobRecord) -> set[int]:
        """Local pages; for a job taken over from another replica, also those in the bucket."""
        done = super().done_pages(record)
        if record.id not in self.taken:
            return done
        try:
            keys = self.objects.keys(self.layout.pages(record.id))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        for obj in keys:
            name = obj["Key"].rsplit("/", 1)[-1].removesuffix(".json")
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
        try:
            return self.leases.candidates()
        except S3Unavailable as exc:
            log.warning("looking for jobs to take over: %s", exc)
            return []

    def claim(self, job_id: str) -> JobRecord | None:
        """Take over a free job: lease first, then its record and document; a job that keeps stopping the replicas
        that run it (a poison document) fails after ``MAX_JOB_TAKEOVERS`` crashes without progress, and a job whose
        document is gone with pages still to do fails too (no replica could go on with it)."""
        claimed = self._claim_record(job_id)
        if claimed is None:
            return None
        lease, record = claimed
        crashes = min(lease.crashes, 1) if record.pages_done > lease.progress else lease.crashes
        self.leases.adjust(job_id, crashes=crashes, progress=record.pages_done)
        previous, record.owner, record.takeovers = record.owner, self.replica, lease.takeovers
        (self.folder(job_id) / "pages").mkdir(parents=True, exist_ok=True)
        if crashes > self.settings.max_job_takeovers:
            self._give_up(record, crashes)
            return None
        if not self._can_go_on(record):
            return None
        self.save(record)  # mirrored at once: the bucket names the new owner before its first page is done
        log.info(
            "job %s taken over from %s (takeover %d, %d/%d pages done, %d crash(es) in a row without progress)",
            job_id,
            previous or "a stopped replica",
            lease.takeovers,
            record.pages_done,
            len(record.pages),
            crashes,
        )
        return record

    def _claim_record(self, job_id: str) -> tuple[Lease, JobRecord] | None:
        """The new lease and the job's record from the bucket; None (nothing held) when the job is not free or over."""
        try:
            lease = self.leases.claim(job_id)
            if lease is None:
                return None
            data = self.objects.fetch(self.layout.job(job_id))
            record = JobRecord.from_json(data) if data is not None else None
        except (S3Unavailable, ValueError) as exc:
            log.warning("job %s: not taken over: %s", job_id, exc)
            self.leases.release(job_id)
            return None
        if record is None or record.finished:  # finished, or never completely accepted: the lease is stale
            self.leases.drop(job_id)
            return None
        return lease, record

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
        if has_input or complete:
            return True
        record.fail(JobError(410, "document_lost", "the job's document is no longer stored; send it again"))
        log.error("job %s failed: its document is gone from the bucket with pages still to do", record.id)
        self.save(record)
        self.finish(record)
        return False

    def _give_up(self, record: JobRecord, crashes: int) -> None:
        message = (
            f"the replicas running this document stopped {crashes} times in a row without finishing a page "
            f"(MAX_JOB_TAKEOVERS={self.settings.max_job_takeovers}); it is not retried: the document may crash the "
            "OCR engine or need more memory than a replica has"
        )
        record.fail(JobError(422, "document_crashes_service", message))
        log.error("job %s failed: %s", record.id, message)
        (self.folder(record.id) / "pages").mkdir(parents=True, exist_ok=True)
        self.save(record)
        self.finish(record)

    def ownership(self, running: Collection[str]) -> Ownership:
        ids = set(running)
        return Ownership(lost=self.leases.lost & ids, cancel=self.leases.cancel & ids)

    def page_starting(self, record: JobRecord) -> None:
        try:
            self.leases.mark_running(record.id)
        except Exception:  # the page goes on: the flag is written with the next renewal
            log.exception("job %s: its lease was not marked running", record.id)

    def finish(self, record: JobRecord) -> None:
        self.leases.finish(record.id)

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
        self.leases.drop_finished()
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
