"""The repository interface: what the job runner, the assembly and the API read and write about jobs.

Every method may block (disk, network): call them in a worker thread, except the ones marked memory-only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.errors import Unavailable
from app.jobs.models import JobRecord, PageOutcome
from app.schemas import DocumentResult
from app.storage.s3.mirror import MirrorHealth


class StorageUnavailable(Unavailable):
    """The shared store cannot be read or written now (code ``storage_unavailable``, retry after 10 s); the message
    is safe to show (no secrets)."""

    def __init__(self, message: str) -> None:
        super().__init__("storage_unavailable", message, retry_after=10)


@dataclass(frozen=True)
class ResultCopy:
    """Where a finished job's result is kept besides this disk: the bucket's copy and the knowledge-base export."""

    s3: Literal["uploaded", "pending", "disabled"] = "disabled"
    bucket: str | None = None
    keys: list[str] = field(default_factory=list)
    rag_export: Literal["uploaded", "pending", "disabled", "not_exported"] = "disabled"
    rag_export_key: str | None = None


class JobRepository(ABC):
    """Records, documents, finished pages and results of jobs."""

    #: ``OUTPUT_DIR``: the local working copy (results, job folders, uploads being received).
    root: Path
    #: Whether results are kept where every replica reads them (a bucket), not on this disk only.
    shares_results: bool = False

    @property
    def incoming(self) -> Path:
        """The folder uploads are received into (server-made names only)."""
        return self.root / ".incoming"

    def result_folder(self, record: JobRecord) -> Path:
        return self.root / record.result_dir

    # --- writing ---------------------------------------------------------------------------------
    @abstractmethod
    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        """Take ``upload`` (moved, or copied with ``copy``) as the job's document and keep the record. Raises
        :class:`StorageUnavailable` (and keeps nothing) when the job cannot be kept where it must be."""

    @abstractmethod
    def forget(self, record: JobRecord) -> None:
        """Undo :meth:`create` (the job was not accepted after all)."""

    @abstractmethod
    def save(self, record: JobRecord) -> None:
        """Keep the job's record (status, progress)."""

    @abstractmethod
    def save_page(self, record: JobRecord, outcome: PageOutcome) -> None:
        """Keep one finished page; its key is fixed by the page number, so saving it twice is harmless."""

    @abstractmethod
    def save_images(self, record: JobRecord, images: dict[str, bytes]) -> None:
        """Keep images referenced from the result's Markdown (relative names inside the result folder)."""

    @abstractmethod
    def save_result(self, record: JobRecord, result: DocumentResult, result_json: bytes, markdown: str) -> None:
        """Keep the assembled ``result`` (as ``result_json`` and ``markdown``), ``result.json`` last."""

    @abstractmethod
    def discard_input(self, record: JobRecord) -> None:
        """Remove this disk's copy of the job's document (``KEEP_JOB_INPUTS=false`` once the job has finished)."""

    # --- reading ---------------------------------------------------------------------------------
    @abstractmethod
    def load(self, job_id: str) -> JobRecord | None:
        """The job's latest record, wherever it runs; None when unknown. :class:`StorageUnavailable`."""

    @abstractmethod
    def done_pages(self, record: JobRecord) -> set[int]:
        """Numbers of the pages already kept."""

    @abstractmethod
    def load_page(self, record: JobRecord, number: int) -> PageOutcome:
        """A kept page (FileNotFoundError when it is not kept)."""

    @abstractmethod
    def input_path(self, record: JobRecord) -> Path | None:
        """A local copy of the job's document (fetched when needed); None when it is no longer kept."""

    @abstractmethod
    def read_result(self, record: JobRecord) -> tuple[bytes, Path | None] | None:
        """``result.json`` of a finished job and its local folder (None when read from the bucket); None when gone."""

    @abstractmethod
    def result_file(self, record: JobRecord, name: str) -> Path | None:
        """A file of the job's result folder (``result.pdf``, ...) on this disk, fetched from the bucket when only
        there; None when it is kept nowhere."""

    @abstractmethod
    async def result_copy(self, record: JobRecord, folder: Path | None, wait: float) -> ResultCopy:
        """Where else the result is kept (``folder``: the local one it was read from, if any), waiting at most
        ``wait`` s for its upload, and within the same ``wait`` for the job's final record (event loop)."""

    def final_stored(self, job_id: str) -> bool:
        """Whether a finished job's final record is kept where every replica reads it (memory only)."""
        return True

    def adopt(self, record: JobRecord) -> None:  # noqa: B027 - optional hook
        """A job taken over from another replica: keep its record here too (its pages may be kept elsewhere)."""

    def health(self) -> MirrorHealth | None:
        """The shared copy's state for ``/health`` (memory only); None when there is none."""
        return None

    # --- lifecycle (optional hooks) ------------------------------------------------------------------
    def start(self) -> None:  # noqa: B027
        """Start background work (uploads). Blocking; called once before the first job."""

    def flush(self, timeout: float) -> bool:
        """Store what is pending within ``timeout`` s (at shutdown); True when nothing is left."""
        return True

    def close(self, timeout: float) -> None:  # noqa: B027
        """Stop background work."""
