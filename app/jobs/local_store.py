"""Jobs on this replica's disk only (no S3): the store for one replica.

Layout under ``OUTPUT_DIR``::

    jobs/<id>/job.json             the record
    jobs/<id>/input                the document (until the job ends, or retention with KEEP_JOB_INPUTS)
    jobs/<id>/pages/00001.json     one file per finished page: they, not a counter, decide where a job resumes
    <YYYY-MM-DD>/<id>/result.json  the result (+ result.md and images)

Every write is atomic. Paths are built from server-made ids only; a client's filename is data, never a path.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from app.jobs.models import JobRecord, PageOutcome, log_finished
from app.jobs.store import JobStore
from app.schemas import DocumentResult, LocalStorage, RagExportStorage, ResultStorage, S3Storage
from app.storage.local import atomic_write, is_valid_id, result_files

log = logging.getLogger(__name__)


TOMBSTONE_DAYS = 30
"""How long a deleted job's id is remembered (so that it answers 410 rather than 404)."""


class LocalJobStore(JobStore):
    """Job folders and result folders under ``root`` (``OUTPUT_DIR``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs_root = root / "jobs"
        self.jobs_root.mkdir(parents=True, exist_ok=True)
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.tombstones = self.jobs_root / ".expired"  # ids of jobs the retention deleted (GET answers 410)
        self.tombstones.mkdir(exist_ok=True)

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
            LocalJobStore.save(self, record)  # this disk only, whatever a subclass adds to save()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def save(self, record: JobRecord) -> None:
        atomic_write(self.record_path(record.id), record.to_json())

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

    async def result_storage(self, record: JobRecord, folder: Path | None, wait: float) -> ResultStorage:
        local = None
        if folder is not None:
            local = LocalStorage(dir=record.result_dir, files=result_files(folder))
        return ResultStorage(
            local=local, s3=S3Storage(status="disabled"), rag_export=RagExportStorage(status="disabled")
        )

    # --- ownership: every job here is this replica's -------------------------------------------------
    def orphans(self) -> list[str]:
        records = (self.load_local(job_id) for job_id in self.ids())
        unfinished = sorted((r for r in records if r is not None and not r.finished), key=lambda r: r.created_at)
        return [r.id for r in unfinished]

    def claim(self, job_id: str) -> JobRecord | None:
        record = self.load_local(job_id)
        return None if record is None or record.finished else record

    def finish(self, record: JobRecord) -> None:
        log_finished(record)  # its record is on this disk already

    # --- retention -------------------------------------------------------------------------------
    def delete_older_than(self, cutoff: datetime, keep: Collection[str]) -> int:
        removed = 0
        for job_id in self.ids():
            if job_id in keep:
                continue
            record = self.load_local(job_id)
            stamp = record.finished_at or record.created_at if record else None
            if record is None or stamp is None or datetime.fromisoformat(stamp) < cutoff:
                if record is not None:
                    self.delete_result(record)
                    atomic_write(self.tombstones / job_id, (stamp or "").encode())  # later asked for: 410, not 404
                self.delete_local(job_id)
                removed += 1
        for day in _day_folders(self.root):
            if datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=timezone.utc) + timedelta(days=1) < cutoff:
                shutil.rmtree(day, ignore_errors=True)
        forget_before = cutoff.timestamp() - TOMBSTONE_DAYS * 86400
        for stone in self.tombstones.glob("*"):
            with contextlib.suppress(OSError):
                if stone.stat().st_mtime < forget_before:
                    stone.unlink()
        return removed

    def expired(self, job_id: str) -> bool:
        return is_valid_id(job_id) and (self.tombstones / job_id).is_file()

    def free_space(self, needed: int, keep: Collection[str]) -> tuple[int, int]:
        """Under disk pressure: delete the kept documents of finished jobs, oldest first, until ``needed`` bytes are
        free; returns (documents deleted, bytes freed). Their page images answer 410 afterwards."""
        finished = []
        for job_id in self.ids():
            path = self.local_input(job_id)
            record = self.load_local(job_id) if job_id not in keep and path.is_file() else None
            if record is not None and record.finished:
                finished.append((record.finished_at or record.created_at, job_id, path))
        deleted = freed = 0
        for _, _, path in sorted(finished):
            if freed >= needed:
                break
            with contextlib.suppress(OSError):
                size = path.stat().st_size
                path.unlink()
                deleted, freed = deleted + 1, freed + size
        return deleted, freed

    def delete_local(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def delete_result(self, record: JobRecord) -> None:
        shutil.rmtree(self.result_folder(record), ignore_errors=True)


def _day_folders(root: Path) -> Iterable[Path]:
    for path in root.iterdir():
        if path.is_dir() and len(path.name) == 10:
            with contextlib.suppress(ValueError):
                datetime.strptime(path.name, "%Y-%m-%d")
                yield path
