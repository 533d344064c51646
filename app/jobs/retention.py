"""Retention: finished jobs and their results are deleted ``RESULT_TTL_HOURS`` after they end; while ``OUTPUT_DIR`` is
short of space (``DISK_MIN_FREE_MB``), the oldest finished jobs' kept documents go first, and, when the bucket holds
every file of a finished job, this disk's copy of it.

Local copies only: objects in the bucket are removed by the bucket's lifecycle rule (see the guide). A deleted
job's id is remembered for ``TOMBSTONE_DAYS`` (it answers 410, not 404).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from app.jobs.models import JobRecord
from app.jobs.repository.local import LocalRepository
from app.storage.local import atomic_write, is_valid_id

if TYPE_CHECKING:
    from app.jobs.service import OcrService

log = logging.getLogger(__name__)

TOMBSTONE_DAYS = 30
"""How long a deleted job's id is remembered (so that it answers 410 rather than 404)."""


class Retention:
    """Deletes finished jobs from this replica's disk (blocking calls).

    With a shared bucket: ``before`` runs first (the leases of finished jobs end, so that they are not kept as
    held), ``held`` names the jobs this replica still owns (kept), ``in_bucket(record)`` says whether every file of a
    finished job is in the bucket (its local copy may go under disk pressure: it is read from there afterwards), and
    ``on_delete(record)`` is told of each deleted result (the knowledge-base export forgets it).
    """

    def __init__(
        self,
        disk: LocalRepository,
        *,
        before: Callable[[], None] | None = None,
        held: Callable[[], Collection[str]] = frozenset,
        in_bucket: Callable[[JobRecord], bool] | None = None,
        on_delete: Callable[[JobRecord], None] | None = None,
    ) -> None:
        self.disk = disk
        self.before = before
        self.held = held
        self.in_bucket = in_bucket
        self.on_delete = on_delete
        self.tombstones = disk.jobs_root / ".expired"
        self.tombstones.mkdir(exist_ok=True)

    def delete_older_than(self, cutoff: datetime, keep: Collection[str]) -> int:
        """Delete finished jobs (and their results) older than ``cutoff``, except ``keep``; how many."""
        if self.before is not None:
            self.before()
        keep = set(keep) | set(self.held())
        disk = self.disk
        removed = 0
        for job_id in disk.ids():
            if job_id in keep:
                continue
            record = disk.load_local(job_id)
            stamp = record.finished_at or record.created_at if record else None
            if record is None or stamp is None or datetime.fromisoformat(stamp) < cutoff:
                if record is not None:
                    self._delete_result(record)
                    atomic_write(self.tombstones / job_id, (stamp or "").encode())  # later asked for: 410, not 404
                disk.delete_local(job_id)
                removed += 1
        for day in _day_folders(disk.root):
            if datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=timezone.utc) + timedelta(days=1) < cutoff:
                shutil.rmtree(day, ignore_errors=True)
        forget_before = cutoff.timestamp() - TOMBSTONE_DAYS * 86400
        for stone in self.tombstones.glob("*"):
            with contextlib.suppress(OSError):
                if stone.stat().st_mtime < forget_before:
                    stone.unlink()
        return removed

    def expired(self, job_id: str) -> bool:
        """Whether ``job_id`` was a job that the retention deleted (it answers 410, not 404)."""
        return is_valid_id(job_id) and (self.tombstones / job_id).is_file()

    def free_space(self, needed: int, keep: Collection[str]) -> tuple[int, int]:
        """Under disk pressure: delete the kept documents of finished jobs, oldest first, then (with a bucket) the
        local copies of finished jobs whose every file is in the bucket, until ``needed`` bytes are freed; returns
        (files deleted, bytes freed). Their page images answer 410 afterwards (without a bucket)."""
        disk = self.disk
        finished = []
        for job_id in disk.ids():
            path = disk.local_input(job_id)
            record = disk.load_local(job_id) if job_id not in keep and path.is_file() else None
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
        if self.in_bucket is None or freed >= needed:
            return deleted, freed
        copies = []
        for job_id in disk.ids():
            record = None if job_id in keep else disk.load_local(job_id)
            if record is not None and record.finished and self.in_bucket(record):
                copies.append((record.finished_at or record.created_at, record))
        for _, record in sorted(copies, key=lambda item: item[0]):
            if freed >= needed:
                break
            size = _folder_size(disk.result_folder(record)) + _folder_size(disk.folder(record.id))
            shutil.rmtree(disk.result_folder(record), ignore_errors=True)
            disk.delete_local(record.id)
            deleted, freed = deleted + 1, freed + size
        return deleted, freed

    def _delete_result(self, record: JobRecord) -> None:
        self.disk.delete_result(record)
        if self.on_delete is not None:
            self.on_delete(record)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _day_folders(root: Path) -> Iterable[Path]:
    for path in root.iterdir():
        if path.is_dir() and len(path.name) == 10:
            with contextlib.suppress(ValueError):
                datetime.strptime(path.name, "%Y-%m-%d")
                yield path


async def clean_up_periodically(service: OcrService, every_s: float = 600, pressure_every_s: float = 10) -> None:
    """Run the clean-up now and every ``every_s`` seconds, and free space every ``pressure_every_s`` seconds while the
    disk is short of it, until cancelled; a failure is logged and retried."""
    next_cleanup = 0.0
    while True:
        try:
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + every_s
                removed = await service.cleanup()
                if removed:
                    log.info("retention: removed %d expired job(s)", removed)
            await service.free_space()
        except OSError as exc:
            log.warning("retention clean-up failed: %s", exc)
        await asyncio.sleep(pressure_every_s)
