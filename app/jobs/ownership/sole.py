"""One replica on one disk: every job there is its own. After a restart on the same disk it resumes every unfinished
job at its first unfinished page."""

from __future__ import annotations

from app.jobs.models import JobRecord, log_finished
from app.jobs.ownership.base import Claimed, Ownership
from app.jobs.repository.local import LocalRepository


class SoleOwnership(Ownership):
    def __init__(self, disk: LocalRepository) -> None:
        self.disk = disk

    def orphans(self) -> list[str]:
        return self.disk.unfinished()

    def claim(self, job_id: str) -> Claimed | None:
        record = self.disk.load_local(job_id)
        return None if record is None or record.finished else Claimed(record)

    def finish(self, record: JobRecord) -> None:
        log_finished(record)  # its record is on this disk already
