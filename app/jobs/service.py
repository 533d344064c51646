"""The OCR use case, as the API sees it: every document becomes a job, run page by page and stored.

``POST /jobs`` submits and returns; ``POST /ocr`` and ``/layout-parsing`` submit and wait up to
``SYNC_TIMEOUT_S``. :class:`OcrService` is a thin facade over the parts: :mod:`~app.jobs.admission` (shutdown,
engine state, queue limits), :mod:`~app.jobs.runner` (pages through the engines), :mod:`~app.jobs.assembly`
(results and page images), :mod:`~app.jobs.takeover` (jobs of stopped replicas) and the :class:`JobStore` chosen at
start-up (:mod:`~app.jobs.store`), which alone knows whether jobs live on this disk or in a shared bucket.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio

from app.documents import Limits, open_document, parse_page_spec
from app.engines.registry import EngineSet
from app.engines.select import Choice
from app.errors import Gone, NotFound, StateConflict
from app.intake.sources import ReceivedDocument
from app.jobs.admission import Admission, Drain
from app.jobs.assembly import page_image, read_result
from app.jobs.models import JobRecord, OcrOptions
from app.jobs.runner import ActiveJob, JobRunner
from app.jobs.store import JobStore
from app.metrics import Metrics
from app.scheduler import PageScheduler
from app.schemas import DocumentResult
from app.settings import Settings
from app.storage.disk import DiskMonitor
from app.storage.local import is_valid_id, new_id

log = logging.getLogger(__name__)


class OcrService:
    """Submits, runs, reports, cancels and resumes OCR jobs."""

    def __init__(
        self,
        settings: Settings,
        engines: EngineSet,
        store: JobStore,
        metrics: Metrics | None = None,
        disk: DiskMonitor | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engines = engines
        self.store = store
        self.jobs = store.repository
        self.owner = store.ownership
        self.scheduler = PageScheduler(engines.workers)
        self.limits = Limits(max_pages=settings.max_pages, max_image_pixels=settings.max_image_pixels)
        self.drain_state = Drain(settings.shutdown_grace_s)
        self.admission = Admission(settings, engines, self.drain_state, disk)
        self.runner = JobRunner(
            settings,
            engines,
            store,
            scheduler=self.scheduler,
            limits=self.limits,
            drain=self.drain_state,
            metrics=self.metrics,
            disk=disk,
            rate=self.admission.rate,
        )
        self.active: dict[str, ActiveJob] = {}
        self.running_ids: frozenset[str] = frozenset()  # the ids in ``active``, readable from any thread
        store.ownership.watch(lambda: self.running_ids)

    @property
    def draining(self) -> bool:
        return self.drain_state.active

    # --- admission -------------------------------------------------------------------------------
    def check_accepting(self, arrived: float | None = None, engine: str | None = None) -> None:
        """503 while shutting down or while the engine is not ready (see :class:`Admission`)."""
        self.admission.check_accepting(arrived, engine)

    def snapshot(self) -> dict[str, Any]:
        """Live numbers for /metrics: pages waiting and running, active jobs by status, engines, storage."""
        jobs = {"queued": 0, "running": 0}
        for active in self.active.values():
            jobs[active.record.status] = jobs.get(active.record.status, 0) + 1
        return {
            "pages_waiting": self.scheduler.queued,
            "pages_running": self.scheduler.running,
            "jobs": jobs,
            "engines": {name: runtime.state for name, runtime in self.engines.runtimes.items()},
            "s3": self.store.health(),
        }

    # --- submitting and waiting ------------------------------------------------------------------
    async def submit(
        self,
        document: ReceivedDocument,
        options: OcrOptions,
        choice: Choice,
        *,
        copy_upload: bool = False,
        arrived: float | None = None,
    ) -> JobRecord:
        """Validate the document, store a job for it (taking its file, or a copy) and start it on the engine the
        request was given (``choice``, made once when the request came in: :mod:`app.intake.receiver`).

        Raises 4xx :class:`ServiceError` for bad documents or options, 503 when the chosen engine is not ready or the
        shared store cannot take the job, 429 when the queue is full.
        """
        self.check_accepting(arrived, choice.engine)
        upload, content_type = document.path, document.content_type
        page_count = await anyio.to_thread.run_sync(self._count_pages, upload, content_type)
        numbers = parse_page_spec(options.pages, page_count)
        with self.admission.reserve(self._records, len(numbers)):
            job_id = new_id()
            record = JobRecord(
                id=job_id,
                filename=document.filename,
                content_type=content_type,
                page_count=page_count,
                pages=numbers,
                dpi=options.dpi,
                result_dir=f"{datetime.now(timezone.utc):%Y-%m-%d}/{job_id}",
                engine=choice.engine,
                languages=list(choice.languages),
                engine_reason=choice.reason,
                owner=self.owner.replica,
                keep_input=self.settings.keep_job_inputs,
                export_name=options.export_name,
            )
            await anyio.to_thread.run_sync(self.store.create, record, upload, copy_upload)
            self.start(record)
        log.info(
            "job %s accepted: %s, %d of %d page(s), engine %s (%s)",
            job_id,
            content_type,
            len(numbers),
            page_count,
            choice.engine,
            choice.reason,
        )
        return record

    def _records(self) -> list[JobRecord]:
        return [a.record for a in self.active.values()]

    def _count_pages(self, path: Path, content_type: str) -> int:
        with open_document(path, content_type, self.limits) as document:
            return document.page_count

    async def wait(self, job_id: str, timeout: float | None) -> JobRecord:  # noqa: ASYNC109
        """The job's record once it has finished, or as it is when ``timeout`` passes.

        While the job has a waiter it keeps running during a drain, until shortly before the grace period ends;
        then the waiter gets the unfinished record (the job resumes after the restart, or on another replica).
        """
        active = self.active.get(job_id)
        if active is None:
            return await self.find(job_id)
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        active.waiters += 1
        try:
            while not active.finished.is_set():
                limit = end
                if self.draining:
                    grace_end = loop.time() + self.drain_state.remaining() - 2.0
                    limit = grace_end if limit is None else min(limit, grace_end)
                remaining = None if limit is None else limit - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                events = [active.finished.wait()] + ([] if self.draining else [self.drain_state.event.wait()])
                tasks = [asyncio.ensure_future(e) for e in events]
                done, pending = await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if not done:
                    break
        finally:
            active.waiters -= 1
        return active.record

    # --- reading ---------------------------------------------------------------------------------
    async def find(self, job_id: str) -> JobRecord:
        """The job from this replica's memory, else from the store (any replica's job). 404 when unknown; 503 when
        the shared store cannot be read."""
        active = self.active.get(job_id)
        if active is not None and not active.lost:
            mine = active.record
            return mine if not mine.finished or self.jobs.final_stored(job_id) else mine.storing()
        if not is_valid_id(job_id):
            raise NotFound("job_not_found", f"no job {job_id}")
        record = await anyio.to_thread.run_sync(self.jobs.load, job_id)
        if record is None and await anyio.to_thread.run_sync(self.store.retention.expired, job_id):
            raise Gone(
                "job_expired",
                f"job {job_id} finished more than RESULT_TTL_HOURS ({self.settings.result_ttl_hours:g} h) ago and "
                "was deleted with its result",
            )
        if record is None:
            raise NotFound("job_not_found", f"no job {job_id}")
        return record

    def queue_position(self, record: JobRecord) -> int | None:
        """1-based position among this replica's jobs that have not started, or None when it has (or runs elsewhere)."""
        if record.status != "queued":
            return None
        waiting = sorted(
            (a.record.created_at, a.record.id) for a in self.active.values() if a.record.status == "queued"
        )
        key = (record.created_at, record.id)
        return 1 + waiting.index(key) if key in waiting else None

    async def result(self, record: JobRecord, upload_wait: float = 0) -> DocumentResult:
        """The finished job's result (see :func:`~app.jobs.assembly.read_result`)."""
        return await read_result(self.jobs, record, upload_wait)

    async def result_file(self, record: JobRecord, name: str) -> Path | None:
        """A file of the finished job's result folder (e.g. an image its Markdown references, ``imgs/...``) on this
        disk, fetched from the shared store when only there; None when it is stored nowhere. 503 when the shared
        store cannot be read."""
        return await anyio.to_thread.run_sync(self.jobs.result_file, record, name)

    async def page_image(self, record: JobRecord, number: int) -> bytes:
        """A page of the job's document as a JPEG (see :func:`~app.jobs.assembly.page_image`)."""
        return await page_image(self.jobs, record, number, self.limits)

    async def cancel(self, job_id: str) -> JobRecord:
        """Stop a queued or running job: running pages finish, no new pages start. A job running on another replica
        is asked to stop through the shared store (it stops within seconds). 409 for a finished job."""
        active = self.active.get(job_id)
        if active is not None and not active.record.finished:
            active.cancel_requested = True
            return active.record
        record = await self.find(job_id)
        if record.finished:
            raise StateConflict(f"job_{record.status}", f"job {job_id} is already {record.status}")
        await anyio.to_thread.run_sync(self.owner.request_cancel, record.id)
        log.info("job %s: cancel requested for the replica that runs it (%s)", job_id, record.owner or "none yet")
        return record

    # --- running ---------------------------------------------------------------------------------
    def start(self, record: JobRecord) -> None:
        """Run ``record`` on this replica (it has been created or claimed here)."""
        active = ActiveJob(record)
        self.active[record.id] = active
        self.running_ids = frozenset(self.active)
        active.task = asyncio.get_running_loop().create_task(
            self.runner.run(active, self._forget), name=f"job-{record.id}"
        )

    def _forget(self, active: ActiveJob) -> None:
        if self.active.get(active.record.id) is active:
            del self.active[active.record.id]
            self.running_ids = frozenset(self.active)

    def apply_ownership(self) -> None:
        """Stop jobs another replica took over; cancel jobs another replica was asked to cancel (memory only)."""
        if not self.active:
            return
        changes = self.owner.changes(self.running_ids)
        for job_id in changes.lost:
            if job_id in self.active:
                self.active[job_id].lost = True
        for job_id in changes.cancel:
            if job_id in self.active:
                self.active[job_id].cancel_requested = True

    async def take_over(self) -> int:
        """Claim and start unfinished jobs nobody runs; returns how many were started. On a local disk: all of them
        (at start). With a shared store: at most one per call, and only while there is room here (see
        :meth:`Admission.room_for_more`); the other replicas take the rest."""
        started = 0
        for job_id in await anyio.to_thread.run_sync(self.owner.orphans):
            if self.owner.others_may_run and started:
                break
            if job_id in self.active or self.draining:
                continue
            if self.owner.others_may_run and not self.admission.room_for_more(self._records()):
                break
            record = await anyio.to_thread.run_sync(self.store.take_over, job_id)
            if record is None:
                continue
            record.status = "queued"
            self.start(record)
            self.apply_ownership()  # a cancel requested while nobody ran it
            started += 1
            log.info("job %s resumed", job_id)
        return started

    # --- lifecycle -------------------------------------------------------------------------------
    def begin_drain(self) -> None:
        """Stop taking new work; jobs without a waiting request stop starting pages (they resume after the restart
        or on another replica); requests already in flight are still served within ``SHUTDOWN_GRACE_S``."""
        if self.drain_state.begin():
            log.info("draining: %d job(s) active", len(self.active))

    async def drain(self) -> None:
        """Let running pages finish and checkpoint, hand unfinished jobs back, flush uploads, stop the workers; all
        within ``SHUTDOWN_GRACE_S`` of the stop signal."""
        self.begin_drain()
        tasks = [a.task for a in self.active.values() if a.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.1, self.drain_state.remaining() - 3.0))
            for task in late:
                task.cancel()
        self.scheduler.shutdown(wait=False)
        await anyio.to_thread.run_sync(self.store.close, max(1.0, self.drain_state.remaining() - 0.5))

    async def free_space(self) -> tuple[int, int]:
        """While ``OUTPUT_DIR`` is short of space: free up to twice ``DISK_MIN_FREE_MB`` (oldest finished documents
        first, see :meth:`JobStore.free_space`); returns (files deleted, bytes freed)."""
        disk = self.admission.disk
        if disk is None or disk.state.status != "low_space":
            return 0, 0
        needed = max(0, 2 * disk.min_free_bytes - (disk.free_bytes or 0))
        deleted, freed = await anyio.to_thread.run_sync(self.store.retention.free_space, needed, set(self.active))
        if deleted:
            log.warning(
                "retention: disk short of space (%s); removed %d stored file(s) of finished jobs, %.1f MB",
                disk.reason,
                deleted,
                freed / 1024 / 1024,
            )
            await anyio.to_thread.run_sync(disk.check_now)
        return deleted, freed

    async def cleanup(self, now: datetime | None = None) -> int:
        """Delete finished jobs (and their results) older than ``RESULT_TTL_HOURS``; returns how many."""
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(hours=self.settings.result_ttl_hours)
        return await anyio.to_thread.run_sync(self.store.retention.delete_older_than, cutoff, set(self.active))
