"""Job persistence on local disk: ``OUTPUT_DIR/jobs/<id>/`` holds ``job.json``, the input and one file per page.

``job.json`` is the job's record; ``pages/NNNNN.json`` exist exactly for the pages that are done, so
they — not a counter — decide where a job resumes after a restart. Every write is atomic.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from app.storage.local import atomic_write, is_valid_id

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE: tuple[JobStatusName, ...] = ("queued", "running")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class JobRecord:
    """What is known about a job; serialised as ``job.json``."""

    id: str
    filename: str | None
    content_type: str
    page_count: int
    pages: list[int]
    dpi: int
    result_dir: str
    engine: str
    languages: list[str] = field(default_factory=list)  # what the engine was asked to read
    engine_reason: str | None = None  # issue-14: why that engine (shown in the result)
    status: JobStatusName = "queued"
    created_at: str = field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    pages_done: int = 0
    failed_pages: list[int] = field(default_factory=list)
    s3_mirrored: bool = False  # the result was recorded for upload to S3

    @property
    def finished(self) -> bool:
        return self.status not in ACTIVE

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> JobRecord:
        raw = json.loads(data)
        known = {name: raw[name] for name in cls.__dataclass_fields__ if name in raw}
        return cls(**known)


class JobStore:
    """Job folders under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> Path:
        if not is_valid_id(job_id):
            raise ValueError("not a job id")
        return self.root / job_id

    def input_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "input"

    def create(self, record: JobRecord, upload: Path, copy: bool = False) -> None:
        """Take ``upload`` into the job folder (moved, or copied with ``copy``) and write the record."""
        folder = self.folder(record.id)
        (folder / "pages").mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copyfile(upload, folder / "input")
        else:
            shutil.move(str(upload), folder / "input")
        self.save(record)

    def record_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "job.json"

    def page_path(self, job_id: str, number: int) -> Path:
        return self.folder(job_id) / "pages" / f"{number:05d}.json"

    def save(self, record: JobRecord) -> None:
        atomic_write(self.record_path(record.id), record.to_json())

    def load(self, job_id: str) -> JobRecord | None:
        try:
            return JobRecord.from_json((self.folder(job_id) / "job.json").read_bytes())
        except (ValueError, OSError):
            return None

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_valid_id(p.name))

    def save_page(self, job_id: str, number: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        atomic_write(self.page_path(job_id, number), data)

    def done_pages(self, job_id: str) -> set[int]:
        pages = self.folder(job_id) / "pages"
        if not pages.is_dir():
            return set()
        return {int(p.stem) for p in pages.glob("*.json") if p.stem.isdigit()}

    def load_page(self, job_id: str, number: int) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.page_path(job_id, number).read_bytes())
        return payload

    def discard_input(self, job_id: str) -> None:
        self.input_path(job_id).unlink(missing_ok=True)

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)
