"""Where jobs live: the one seam between deployments.

:class:`JobStore` is the interface; it has two implementations, chosen once at start-up by :func:`build_job_store`:

- :class:`~app.jobs.local_store.LocalJobStore`: ``OUTPUT_DIR`` only. One replica; after a restart on the same disk
  every unfinished job resumes at its first unfinished page.
- :class:`~app.jobs.s3_store.S3JobStore`: the local disk as a working copy plus a bucket shared by every replica
  (all four ``CLOUDRU_S3_*`` set). A job is accepted only once its document and record are in the bucket; the
  replica running it holds a lease there; any replica reports, cancels and continues it.

The rest of the service never asks which one it has. Every method here may block (disk, network): call them in a
worker thread, except the few marked as memory-only.
"""

from __future__ import annotations

import logging
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from app.jobs.models import JobRecord, PageOutcome
from app.schemas import DocumentResult, ResultStorage
from app.settings import Settings


class StorageUnavailable(Exception):
    """The shared store cannot be read or written now; the message is safe to show (no secrets)."""


@dataclass
class Ownership:
    """What changed about the jobs this replica runs (read from memory by the runner)."""

    lost: set[str] = field(default_factory=set)  # another replica holds them now: stop, write nothing more
    cancel: set[str] = field(default_factory=set)  # another replica was asked to cancel them


class JobStore(ABC):
    """Records, documents, finished pages and results of jobs, and which replica runs which job."""

    #: ``OUTPUT_DIR``: the local working copy (results, job folders, uploads being received).
    root: Path
    #: Whether other replicas see these jobs and may continue them (then ownership matters).
    shared: bool = False
    #: This replica's name in the shared store (a job's ``owner``); None on a local disk.
    replica: str | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (uploads, leases). Blocking; called once before the first job."""

    def close(self, timeout: float) -> None:  # noqa: B027 - optional hook
        """Flush what can be flushed within ``timeout`` seconds, hand back unfinished jobs, stop."""

    def health(self) -> dict[str, Any]:
        """The ``s3`` block of ``/health`` (memory only)."""
        return {"status": "not_configured"}

    def stats(self) -> dict[str, Any] | None:
        """Numbers for ``/metrics`` (memory only); None when there is nothing to report."""
        return None

    @property
    def incoming(self) -> Path:
        """The folder uploads are received into (server-made names only)."""
        return self.root / ".incoming"

    # --- writing ---------------------------------------------------------------------------------
    @abstractmethod
    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        """Take ``upload`` (moved, or copied with ``copy``) as the job's document and store the record.

        When this returns the job survives a restart of this process (local) or of this container (shared);
        raises :class:`StorageUnavailable` (and keeps nothing) when that cannot be promised now.
        """

    @abstractmethod
    def save(self, record: JobRecord) -> None:
        """Store the job's record (status, progress)."""

    @abstractmethod
    def save_page(self, record: JobRecord, outcome: PageOutcome) -> None:
        """Store one finished page; its key is fixed by the page number, so saving it twice is harmless."""

    @abstractmethod
    def save_images(self, record: JobRecord, images: dict[str, bytes]) -> None:
        """Store images referenced from the result's Markdown (relative names inside the result folder)."""

    @abstractmethod
    def save_result(self, record: JobRecord, result: DocumentResult, result_json: bytes, markdown: str) -> None:
        """Store the assembled ``result`` (as ``result_json`` and ``markdown``); ``result.json`` last (it marks a
        complete result)."""

    @abstractmethod
    def discard_input(self, record: JobRecord) -> None:
        """Remove the job's document (``KEEP_JOB_INPUTS=false`` once the job has finished)."""

    # --- reading ---------------------------------------------------------------------------------
    @abstractmethod
    def load(self, job_id: str) -> JobRecord | None:
        """The job's latest record, wherever it runs; None when unknown. :class:`StorageUnavailable` may be raised."""

    @abstractmethod
    def done_pages(self, record: JobRecord) -> set[int]:
        """Numbers of the pages already stored."""

    @abstractmethod
    def load_page(self, record: JobRecord, number: int) -> PageOutcome:
        """A stored page (FileNotFoundError when it is not stored)."""

    @abstractmethod
    def input_path(self, record: JobRecord) -> Path | None:
        """A local copy of the job's document (fetched when needed); None when it is no longer stored."""

    @abstractmethod
    def read_result(self, record: JobRecord) -> tuple[bytes, Path | None] | None:
        """``result.json`` of a finished job and its local folder (None when read from the bucket); None when gone."""

    @abstractmethod
    async def result_storage(self, record: JobRecord, folder: Path | None, wait: float) -> ResultStorage:
        """The ``storage`` block of a result, waiting at most ``wait`` s for its upload (event loop)."""

    def result_folder(self, record: JobRecord) -> Path:
        return self.root / record.result_dir

    def result_file(self, record: JobRecord, name: str) -> Path | None:
        """A file of the job's result folder (``result.pdf``, ...) on this disk, fetched from the shared store when
        only there; None when it is stored nowhere. :class:`StorageUnavailable` when the shared store cannot be
        read."""
        path = self.result_folder(record) / name
        return path if path.is_file() else None

    # --- ownership -------------------------------------------------------------------------------
    @abstractmethod
    def orphans(self) -> list[str]:
        """Ids of unfinished jobs that no replica runs, oldest first (at start: every unfinished job here)."""

    @abstractmethod
    def claim(self, job_id: str) -> JobRecord | None:
        """Take an orphan to run it here; its record, or None when another replica has it or it has finished."""

    def takeover_due(self) -> bool:
        """Whether a job may be taken over now (memory only; shared stores: one was handed back or expired)."""
        return False

    def watch(self, running: Callable[[], Collection[str]]) -> None:  # noqa: B027 - optional hook
        """``running()`` says which jobs run on this replica now (thread-safe): a shared store hands back what it
        holds for a job that runs nowhere here."""

    def final_stored(self, job_id: str) -> bool:
        """Whether a finished job's final record is stored where every replica reads it (memory only)."""
        return True

    def ownership(self, running: Collection[str]) -> Ownership:
        """Which of the ``running`` jobs were taken over or asked to cancel elsewhere (memory only)."""
        return Ownership()

    def page_starting(self, record: JobRecord) -> None:  # noqa: B027 - optional hook
        """A page of ``record`` is about to be recognised here (worker thread): shared stores note, once per run
        here, that a crash from now on may be the job's doing (see ``MAX_JOB_TAKEOVERS``)."""

    def finish(self, record: JobRecord) -> None:  # noqa: B027 - optional hook
        """The job has finished here: give up its ownership once its files are stored for good, and log its end
        (:func:`~app.jobs.models.log_finished`) once its final record is."""

    def hand_back(self, record: JobRecord) -> None:  # noqa: B027 - optional hook
        """This replica cannot continue ``record`` now (e.g. its disk is full): let another replica take it."""

    def request_cancel(self, record: JobRecord) -> None:  # noqa: B027 - optional hook
        """Ask the replica running ``record`` to cancel it (shared stores)."""

    # --- retention -------------------------------------------------------------------------------
    @abstractmethod
    def delete_older_than(self, cutoff: datetime, keep: Collection[str]) -> int:
        """Delete finished jobs (and their results) older than ``cutoff``, except ``keep``; how many."""

    def expired(self, job_id: str) -> bool:
        """Whether ``job_id`` was a job that the retention deleted (it answers 410, not 404)."""
        return False

    def free_space(self, needed: int, keep: Collection[str]) -> tuple[int, int]:
        """Under disk pressure, delete what this replica can spare (oldest first) until ``needed`` bytes are freed,
        except for the jobs in ``keep``; returns (files deleted, bytes freed)."""
        return 0, 0


def build_job_store(settings: Settings, root: Path) -> JobStore:
    """The store for this deployment, chosen once: S3 when all four ``CLOUDRU_S3_*`` are set, else the local disk."""
    from app.jobs.local_store import LocalJobStore
    from app.jobs.s3_store import S3JobStore
    from app.storage.s3.client import s3_enabled

    if s3_enabled(settings):
        return S3JobStore(settings, root, replica_name(settings))
    if settings.rag_export_prefix:
        logging.getLogger(__name__).warning(
            "RAG_EXPORT_PREFIX is set but the S3 mirror is off: no knowledge-base export"
        )
    return LocalJobStore(root)


def replica_name(settings: Settings) -> str:
    """``REPLICA_ID``, else the host name (the container's) with a random suffix: unique per process."""
    if settings.replica_id:
        return settings.replica_id
    return f"{socket.gethostname()[:40]}-{secrets.token_hex(3)}"
