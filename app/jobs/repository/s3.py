"""Jobs kept in a bucket shared by every replica, with this replica's disk as the working copy (composition: a
:class:`~app.jobs.repository.local.LocalRepository` and the S3 mirror).

- **Accepted means durable.** :meth:`S3Repository.create` returns only once the document is in the bucket (the
  record and the lease follow, written by :mod:`app.jobs.ownership`); when S3 cannot be reached it keeps nothing and
  raises :class:`StorageUnavailable` (the API answers 503 with ``Retry-After``): a job that only this container's
  disk knows would be lost with it.
- **Progress** (pages, records, results) is written locally, then uploaded in the background through the durable
  outbox (:mod:`app.storage.s3.mirror`). A page lost with a container is simply recognised again by the next owner:
  its key is fixed by its number. Every upload of ``job.json`` goes through ``write_record`` (the ownership's fenced
  write), so a replica that lost a job never overwrites the new owner's record.
- **Final means stored.** A job's final status is shown (here and so on every replica) only once its ``job.json``
  is in the bucket; until then it is ``running`` with ``waiting`` saying that the result is being stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from app.jobs.models import JobRecord, PageOutcome
from app.jobs.repository.base import JobRepository, ResultCopy, StorageUnavailable
from app.jobs.repository.local import LocalRepository
from app.schemas import DocumentResult
from app.settings import Settings
from app.storage.local import atomic_write, result_files
from app.storage.rag_export import RagExport
from app.storage.s3.errors import S3Unavailable
from app.storage.s3.mirror import MirrorHealth, S3Mirror

log = logging.getLogger(__name__)

_FAIL_FAST_S = 3.0  # after a failed direct call, refuse new jobs at once for this long


class S3Repository(JobRepository):
    """This disk (``disk``) plus the bucket: any replica reports and continues any job."""

    shares_results = True

    def __init__(self, settings: Settings, root: Path) -> None:
        self.root = root
        self.disk = LocalRepository(root)
        self.mirror = S3Mirror(settings, root)
        self.layout = self.mirror.layout
        self.objects = self.mirror.objects
        self.rag_export = RagExport(settings, self.mirror, root)
        self.taken: set[str] = set()  # jobs taken over here: their pages may be in the bucket only

    def fence(self, may_write: Callable[[str], bool], write: Callable[[str, bytes], bool]) -> None:
        """Every upload of ``job.json`` asks ``may_write(job_id)`` (memory) and goes through ``write`` (the
        ownership's fenced write; False when the record is no longer this replica's to write)."""
        self.mirror.outbox.state_guard = may_write
        self.mirror.state_writer = write

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.mirror.start()

    def flush(self, timeout: float) -> bool:
        flushed = self.mirror.flush(timeout)
        if not flushed:
            log.warning("S3: the outbox was not empty within SHUTDOWN_GRACE_S; the next owner redoes that work")
        return flushed

    def close(self, timeout: float) -> None:
        self.mirror.close(timeout)

    def health(self) -> MirrorHealth:
        return self.mirror.health()

    # --- writing -----------------------------------------------------------------------------------
    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        self.disk.create(record, upload, copy)
        try:
            failure = self.objects.recent_failure(_FAIL_FAST_S)
            if failure:
                raise S3Unavailable(failure)
            self.objects.upload(self.disk.local_input(record.id), self.layout.input(record.id))
        except S3Unavailable as exc:
            self.forget(record)
            raise StorageUnavailable(str(exc)) from None

    def forget(self, record: JobRecord) -> None:
        self.disk.delete_local(record.id)
        try:
            self.objects.delete([self.layout.input(record.id), self.layout.job(record.id)])
        except S3Unavailable as exc:
            log.warning("S3: job %s not removed: %s", record.id, exc)

    def save(self, record: JobRecord) -> None:
        self.disk.save(record)
        self.mirror.job_state(record.id, self.disk.record_path(record.id))

    def replace_record(self, job_id: str, data: bytes) -> None:
        self.disk.replace_record(job_id, data)

    def save_page(self, record: JobRecord, outcome: PageOutcome) -> None:
        self.disk.save_page(record, outcome)
        self.mirror.page(record.id, outcome.number, self.disk.page_path(record.id, outcome.number))

    def save_images(self, record: JobRecord, images: dict[str, bytes]) -> None:
        self.disk.save_images(record, images)

    def save_result(self, record: JobRecord, result: DocumentResult, result_json: bytes, markdown: str) -> None:
        self.disk.save_result(record, result, result_json, markdown)
        self.mirror.result(record.id, record.result_dir)  # before job.json says "succeeded": see the outbox
        record.s3_mirrored = True
        record.rag_export_key = self.rag_export.export(record, result)  # after result.json, in the same entry

    def discard_input(self, record: JobRecord) -> None:
        """This disk's copy now; the bucket's goes with the lease (:meth:`SharedOwnership.finish`), once ``job.json``
        says the job ended (until then another replica may have to finish the job and need the document)."""
        self.disk.discard_input(record)

    def adopt(self, record: JobRecord) -> None:
        """A job taken over from another replica: its record here too (the bucket names the new owner already);
        its pages may be in the bucket only."""
        (self.disk.folder(record.id) / "pages").mkdir(parents=True, exist_ok=True)
        self.disk.save(record)
        self.taken.add(record.id)

    # --- reading -----------------------------------------------------------------------------------
    def load(self, job_id: str) -> JobRecord | None:
        """This disk's record when it is final and in the bucket, else the bucket's (the job may run elsewhere).

        A final record not yet in the bucket reads as ``running`` (its result is being stored): no replica ever
        shows a final status that another replica cannot show too. An unfinished local record is an old copy (the
        job runs elsewhere, or nowhere until it is taken over): when the bucket cannot be read, that is a 503, not
        a status that may be behind what was shown before."""
        local = self.disk.load_local(job_id)
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
        done = self.disk.done_pages(record)
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
        """This disk's copy, else the bucket's (a job taken over; a copy a host crash left unreadable: files here are
        written without fsync with ``OUTPUT_FSYNC=auto``)."""
        try:
            return self.disk.load_page(record, number)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError) as exc:
            log.warning("job %s: page %d is unreadable on this disk (%s); reading the bucket's", record.id, number, exc)
        try:
            data = self.objects.fetch(self.layout.page(record.id, number))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        if data is None:
            raise FileNotFoundError(f"page {number} of job {record.id}")
        atomic_write(self.disk.page_path(record.id, number), data)  # a local copy for the next read
        return PageOutcome.from_json(number, data)

    def input_path(self, record: JobRecord) -> Path | None:
        local = self.disk.input_path(record)
        if local is not None:
            return local
        target = self.disk.local_input(record.id)
        try:
            fetched = self.objects.download(self.layout.input(record.id), target)
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        return target if fetched else None

    def read_result(self, record: JobRecord) -> tuple[bytes, Path | None] | None:
        local = self.disk.read_result(record)
        if local is not None or not record.s3_mirrored:
            return local
        try:
            data = self.objects.fetch(self.layout.result(record.result_dir, "result.json"))
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None
        return None if data is None else (data, None)

    def result_file(self, record: JobRecord, name: str) -> Path | None:
        local = self.disk.result_file(record, name)
        if local is not None or not record.s3_mirrored:
            return local
        target = self.result_folder(record) / name
        try:
            return target if self.objects.download(self.layout.result(record.result_dir, name), target) else None
        except S3Unavailable as exc:
            raise StorageUnavailable(str(exc)) from None

    async def result_copy(self, record: JobRecord, folder: Path | None, wait: float) -> ResultCopy:
        rag = self.rag_export.describe(record)
        if not record.s3_mirrored:
            return ResultCopy(rag_export=rag.status, rag_export_key=rag.key)
        if folder is not None:
            keys = [self.layout.result(record.result_dir, name) for name in result_files(folder)]
        else:
            keys = self.objects.list_result(record.result_dir)
        began = time.monotonic()
        uploaded = await self.mirror.wait_result(record.id, wait)
        if uploaded and wait > 0:  # and its final record (the last upload), within the same wait: a GET of the job
            # right after this answer, on any replica, then finds it finished rather than still storing
            await self.mirror.wait_stored(record.id, wait - (time.monotonic() - began))
        return ResultCopy(
            s3="uploaded" if uploaded else "pending",
            bucket=self.mirror.bucket,
            keys=keys,
            rag_export=rag.status,
            rag_export_key=rag.key,
        )

    def in_bucket(self, record: JobRecord) -> bool:
        """Whether every file of the finished job is in the bucket (this disk's copy may go)."""
        return record.s3_mirrored and not self.mirror.pending(record.id)
