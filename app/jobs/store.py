"""Where jobs live and who runs them: the one seam between deployments, chosen once at start-up.

A :class:`JobStore` is three parts, composed by :func:`build_job_store`:

- the **repository** (:mod:`app.jobs.repository`): records, documents, pages and results, on this disk only, or
  on this disk and in a bucket shared by every replica (all four ``CLOUDRU_S3_*`` set);
- the **ownership** (:mod:`app.jobs.ownership`): one replica owns every job on its disk, or leases in the bucket say
  which replica runs which job (any replica reports, cancels and continues any job);
- the **retention** (:mod:`app.jobs.retention`): what is deleted when.

The rest of the service never asks which deployment it has: it calls the parts. :meth:`JobStore.create` and
:meth:`JobStore.take_over` are the two steps that need the repository and the ownership together.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from app.jobs.models import JobRecord
from app.jobs.ownership.base import Ownership, OwnershipHealth
from app.jobs.ownership.shared import SharedOwnership
from app.jobs.ownership.sole import SoleOwnership
from app.jobs.repository.base import JobRepository, StorageUnavailable
from app.jobs.repository.local import LocalRepository
from app.jobs.repository.s3 import S3Repository
from app.jobs.retention import Retention
from app.jobs.takeover_policy import document_lost, poison
from app.settings import Settings
from app.storage.s3.client import missing_settings, s3_enabled
from app.storage.s3.mirror import MirrorHealth

__all__ = ["JobStore", "StorageHealth", "StorageUnavailable", "build_job_store", "local_job_store"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageHealth:
    """The shared store's state (memory only): the bucket's mirror and the leases."""

    mirror: MirrorHealth
    ownership: OwnershipHealth | None


@dataclass
class JobStore:
    repository: JobRepository
    ownership: Ownership
    retention: Retention
    max_takeovers: int = 3

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self.repository.start()
        self.ownership.start()

    def close(self, timeout: float) -> None:
        """Store what is pending (at most ``timeout`` s, minus a moment to hand jobs back), then hand every job still
        held back to the other replicas and stop."""
        deadline = time.monotonic() + timeout
        self.repository.flush(max(0.0, timeout - 2.0))
        self.ownership.close()
        self.repository.close(max(0.5, deadline - time.monotonic()))

    def health(self) -> StorageHealth | None:
        """None without a shared store."""
        mirror = self.repository.health()
        return None if mirror is None else StorageHealth(mirror, self.ownership.health())

    # --- the steps that need both parts ------------------------------------------------------------
    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        """Keep the job (its document, record and ownership). When this returns the job survives a restart of this
        process (local) or of this container (shared); :class:`StorageUnavailable` (nothing kept) otherwise."""
        record.epoch = 1  # the first owner's; every takeover raises it (see app.jobs.ownership)
        try:
            self.repository.create(record, upload, copy)
            self.ownership.accept(record)
        except StorageUnavailable as exc:
            self.repository.forget(record)
            raise StorageUnavailable(
                f"{exc}; the document was not accepted, since a job that only this container's disk knows would be "
                "lost when the container is replaced. Retry shortly."
            ) from None

    def take_over(self, job_id: str) -> JobRecord | None:
        """Claim an orphan to run it here: its record, or None when another replica has it, it has finished, or it
        cannot run any more (a poison document, a lost document: it fails here, once)."""
        claimed = self.ownership.claim(job_id)
        if claimed is None:
            return None
        record = claimed.record
        self.repository.adopt(record)
        error = poison(claimed.crashes, self.max_takeovers)
        if error is None:
            try:
                has_document = self.repository.input_path(record) is not None
                complete = not has_document and set(record.pages) <= self.repository.done_pages(record)
                self.ownership.note_cancel_requested(job_id)
            except StorageUnavailable as exc:
                log.warning("job %s: not taken over: %s", job_id, exc)
                self.ownership.hand_back(job_id)
                return None
            error = document_lost(has_document, complete)
        if error is not None:
            record.fail(error)
            log.error("job %s failed: %s", job_id, error.message)
            self.repository.save(record)
            self.ownership.finish(record)
            return None
        if claimed.previous_owner is not None or claimed.takeovers:
            log.info(
                "job %s taken over from %s (takeover %d, epoch %d, %d/%d pages done, %d crash(es) in a row without "
                "progress)",
                job_id,
                claimed.previous_owner or "a stopped replica",
                claimed.takeovers,
                claimed.epoch,
                record.pages_done,
                len(record.pages),
                claimed.crashes,
            )
        return record


def output_fsync(settings: Settings) -> bool:
    """Whether files written to ``OUTPUT_DIR`` are flushed to the disk one by one (``OUTPUT_FSYNC``; ``auto``: only
    when the local disk is the only store, without the S3 mirror)."""
    if isinstance(settings.output_fsync, bool):
        return settings.output_fsync
    return bool(missing_settings(settings))


def build_job_store(settings: Settings, root: Path) -> JobStore:
    """The store for this deployment, chosen once: S3 when all four ``CLOUDRU_S3_*`` are set, else the local disk."""
    if not s3_enabled(settings):
        if settings.rag_export_prefix:
            log.warning("RAG_EXPORT_PREFIX is set but the S3 mirror is off: no knowledge-base export")
        return local_job_store(root, settings.max_job_takeovers)
    repository = S3Repository(settings, root)
    ownership = SharedOwnership(
        repository.objects,
        replica_name(settings),
        lease_s=settings.job_lease_s,
        scan_s=settings.job_scan_interval_s,
        hand_over_after_s=settings.disk_wait_s,
        pending=repository.mirror.pending,
        replace_record=repository.replace_record,
    )
    repository.fence(ownership.may_write_record, ownership.write_record)
    retention = Retention(
        repository.disk,
        before=ownership.end_finished,
        held=ownership.held,
        in_bucket=repository.in_bucket,
        on_delete=repository.rag_export.forget,
    )
    return JobStore(repository, ownership, retention, settings.max_job_takeovers)


def local_job_store(root: Path, max_takeovers: int = 3, ownership: type[SoleOwnership] = SoleOwnership) -> JobStore:
    """One replica's disk: every job there is its own."""
    disk = LocalRepository(root)
    return JobStore(disk, ownership(disk), Retention(disk), max_takeovers)


def replica_name(settings: Settings) -> str:
    """``REPLICA_ID``, else the host name (the container's) with a random suffix: unique per process."""
    if settings.replica_id:
        return settings.replica_id
    return f"{socket.gethostname()[:40]}-{secrets.token_hex(3)}"
