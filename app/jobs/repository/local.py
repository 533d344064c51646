"""Jobs on this replica's disk: the whole repository of one replica without S3, and the working copy of one with it.

Layout under ``OUTPUT_DIR``::

    jobs/<id>/job.json             the record
    jobs/<id>/input                the document (until the job ends, or retention with KEEP_JOB_INPUTS)
    jobs/<id>/pages/00001.json     one file per finished page: they, not a counter, decide where a job resumes
    <YYYY-MM-DD>/<id>/result.json  the result (+ result.md and images)

Every write is atomic. Paths are built from server-made ids only; a client's filename is data, never a path.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from app.jobs.models import JobRecord, PageOutcome
from app.jobs.repository.base import JobRepository, ResultCopy
from app.schemas import DocumentResult
from app.storage.local import atomic_write, is_valid_id

log = logging.getLogger(__name__)


class LocalRepository(JobRepository):
    """Job folders and result folders under ``root`` (``OUTPUT_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs_root = root / "jobs"
        self.jobs_root.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)

    # --- paths -----------------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        if not is_valid_id(job_id):
            raise ValueError("not a job id")
        return self.jobs_root / job_id

    def record_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "job.json"

    def page_path(self, job_id: str, number: int) -> Path:
        return self.folder(job_id) / "pages" / f"{number:05d}.json"

    def local_input(self, job_id: str) -> Path:
        return self.folder(job_id) / "input"

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # --- writing ---------------------------------------------------------------------------------
    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        folder = self.folder(record.id)
        (folder / "pages").mkdir(parents=True, exist_ok=True)
        try:
            if copy:
                shutil.copyfile(upload, folder / "input")
            else:
                shutil.move(str(upload), folder / "input")
            self.save(record)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def forget(self, record: JobRecord) -> None:
        self.delete_local(record.id)

    def save(self, record: JobRecord) -> None:
        atomic_write(self.record_path(record.id), record.to_json())

    def replace_record(self, job_id: str, data: bytes) -> None:
        """This disk's copy of the record becomes ``data`` (another replica's newer version)."""
        atomic_write(self.record_path(job_id), data)

    def save_page(self, record: JobRecord, outcome: PageOutcome) -> None:
        atomic_write(self.page_path(record.id, outcome.number), outcome.to_json())

    def save_images(self, record: JobRecord, images: dict[str, bytes]) -> None:
        folder = self.result_folder(record)
        for name, data in images.items():
            target = (folder / name).resolve()
            if folder.resolve() not in target.parents:
                raise ValueError(f"image path {name!r} leaves the result folder")
            atomic_write(target, data)

    def save_result(self, record: JobRecord, result: DocumentResult, result_json: bytes, markdown: str) -> None:
        folder = self.result_folder(record)
        atomic_write(folder / "result.md", markdown.encode("utf-8"))
        atomic_write(folder / "result.json", result_json)

    def discard_input(self, record: JobRecord) -> None:
        self.local_input(record.id).unlink(missing_ok=True)

    # --- reading ---------------------------------------------------------------------------------
    def load(self, job_id: str) -> JobRecord | None:
        return self.load_local(job_id)

    def load_local(self, job_id: str) -> JobRecord | None:
        try:
            return JobRecord.from_json(self.record_path(job_id).read_bytes())
        except (ValueError, OSError):
            return None

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.jobs_root.iterdir() if p.is_dir() and is_valid_id(p.name))

    def done_pages(self, record: JobRecord) -> set[int]:
        pages = self.folder(record.id) / "pages"
        if not pages.is_dir():
            return set()
        return {int(p.stem) for p in pages.glob("*.json") if p.stem.isdigit()}

    def load_page(self, record: JobRecord, number: int) -> PageOutcome:
        return PageOutcome.from_json(number, self.page_path(record.id, number).read_bytes())

    def input_path(self, record: JobRecord) -> Path | None:
        path = self.local_input(record.id)
        return path if path.is_file() else None

    def read_result(self, record: JobRecord) -> tuple[bytes, Path | None] | None:
        folder = self.result_folder(record)
        try:
            return (folder / "result.json").read_bytes(), folder
        except FileNotFoundError:
            return None

    def result_file(self, record: JobRecord, name: str) -> Path | None:
        path = self.result_folder(record) / name
        return path if path.is_file() else None

    async def result_copy(self, record: JobRecord, folder: Path | None, wait: float) -> ResultCopy:
        return ResultCopy()

    def unfinished(self) -> list[str]:
        """Ids of the unfinished jobs on this disk, oldest first."""
        records = (self.load_local(job_id) for job_id in self.ids())
        unfinished = sorted((r for r in records if r is not None and not r.finished), key=lambda r: r.created_at)
        return [r.id for r in unfinished]

    # --- deleting (retention: app.jobs.retention) ---------------------------------------------------
    def delete_local(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def delete_result(self, record: JobRecord) -> None:
        shutil.rmtree(self.result_folder(record), ignore_errors=True)
