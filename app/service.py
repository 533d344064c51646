"""The OCR use case. Every document becomes a persisted job processed page by page.

``POST /jobs`` submits and returns; ``POST /ocr`` submits and waits up to ``SYNC_TIMEOUT_S``. Pages run
on the fair :class:`PageScheduler` (never on the event loop), at most ``scheduler.workers`` pages of
a job at a time and rendered only when a worker takes them, so memory stays flat for any page count.
Each finished page is written to disk at once; after a restart a job resumes at its first
unfinished page. All job state is changed on the event loop; worker threads only compute pages.

With S3 enabled every write of job state, of a page and of the result is also recorded for the S3
mirror (:mod:`app.storage.s3`), and a job this replica does not have on disk is looked up in S3:
a job runs on the replica that accepted it, any replica can report it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio

from app.documents import Document, Limits, open_document, parse_page_spec
from app.engines.base import EngineRuntime
from app.engines.registry import EngineSet
from app.errors import ServiceError
from app.jobs.store import JobRecord, JobStore, utc_now
from app.metrics import Metrics
from app.results import build_page, failed_page, join_pages, page_image_names
from app.scheduler import PageScheduler
from app.schemas import DocumentResult, LocalStorage, PageResult, ResultFiles, ResultStorage, S3Storage, Timings
from app.settings import Settings
from app.storage.local import LocalStore, is_valid_id, new_id
from app.storage.s3 import S3Mirror, S3Unavailable, result_files
from app.url_fetch import FetchPolicy

log = logging.getLogger(__name__)

PAGE_IMAGE_MAX_SIDE = 2000
"""Page images (for showing a page with its boxes) are scaled down to at most this many pixels a side."""


@dataclass(frozen=True)
class OcrOptions:
    pages: str | None = None
    dpi: int = 150
    languages: tuple[str, ...] | None = None  # None: OCR_LANGUAGES
    engine: str | None = None  # None: chosen by language (or OCR_ENGINE)


@dataclass(frozen=True)
class Incoming:
    """A server-named file for one request's document, under the store's ``.incoming`` folder."""

    id: str
    path: Path


@dataclass
class _ActiveJob:
    record: JobRecord
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    waiters: int = 0  # HTTP requests waiting for this job (sync /ocr): it keeps running while draining
    task: asyncio.Task[None] | None = None


class OcrService:
    """Submits, runs, persists, resumes and reports OCR jobs."""

    def __init__(
        self,
        settings: Settings,
        engines: EngineSet,
        store: LocalStore,
        metrics: Metrics | None = None,
        mirror: S3Mirror | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engines = engines
        self.store = store
        self.mirror = mirror
        self.jobs = JobStore(store.root / "jobs")
        self.scheduler = PageScheduler(engines.workers)
        self.limits = Limits(max_pages=settings.max_pages, max_image_pixels=settings.max_image_pixels)
        self.draining = False
        self._drain_started = 0.0
        self._drain_event = asyncio.Event()
        self._active: dict[str, _ActiveJob] = {}
        self._reserved_jobs = 0  # places taken by submissions between the capacity check and _start
        self._reserved_pages = 0

    @property
    def runtime(self) -> EngineRuntime:
        """The default engine's runtime (see :class:`EngineSet`)."""
        return self.engines.default

    # --- admission -------------------------------------------------------------------------------
    def check_accepting(self, arrived: float | None = None, engine: str | None = None) -> None:
        """503 while shutting down (except for requests that ``arrived`` — ``time.monotonic()`` — before
        the drain began: they are in flight and get served) or while ``engine`` (default: the default
        engine) is not ready."""
        if self.draining and (arrived is None or arrived >= self._drain_started):
            raise ServiceError(
                503, "shutting_down", "the service is restarting; retry shortly", headers={"Retry-After": "15"}
            )
        runtime = self.engines.runtimes[engine] if engine else self.runtime
        if runtime.state == "initializing":
            detail = f": {runtime.engine.detail}" if runtime.engine.detail else ""
            raise ServiceError(
                503,
                "engine_initializing",
                f"the OCR engine {runtime.engine.name} is still initialising "
                f"({runtime.elapsed_seconds:.0f} s so far){detail}",
                headers={"Retry-After": "10"},
            )
        if runtime.state == "failed":
            raise ServiceError(503, "engine_failed", f"the OCR engine {runtime.engine.name} failed: {runtime.error}")

    def _check_capacity(self, new_pages: int) -> None:
        """429 when ``MAX_QUEUED_JOBS`` documents or ``MAX_QUEUED_PAGES`` pages are already accepted
        (submissions still being stored count too), else reserve a place for this document."""
        running = [a.record for a in self._active.values() if not a.record.finished]
        jobs = len(running) + self._reserved_jobs
        pages = sum(len(r.pages) - r.pages_done for r in running) + self._reserved_pages
        if jobs >= self.settings.max_queued_jobs:
            reason = f"{jobs} documents are already queued or running"
        elif pages + new_pages > self.settings.max_queued_pages:
            reason = f"{pages} pages are already waiting; this document adds {new_pages}"
        else:
            self._reserved_jobs += 1
            self._reserved_pages += new_pages
            return
        raise ServiceError(429, "queue_full", f"{reason}; retry later", headers={"Retry-After": "30"})

    @contextlib.asynccontextmanager
    async def incoming(self) -> AsyncIterator[Incoming]:
        """A fresh id and the path a document is received at; the file is removed on exit.

        Paths are built from the server-generated id only, never from a client's filename.
        """
        upload_id = new_id()
        path = self.store.incoming / f"{upload_id}.upload"
        try:
            yield Incoming(upload_id, path)
        finally:
            path.unlink(missing_ok=True)

    def url_policy(self) -> FetchPolicy:
        """The guards for fetching a client-given URL; 400 ``url_input_disabled`` when ``ALLOW_URL_INPUT`` is off."""
        settings = self.settings
        if not settings.allow_url_input:
            raise ServiceError(
                400, "url_input_disabled", "URL input is disabled on this server (ALLOW_URL_INPUT); send the file"
            )
        return FetchPolicy(
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.url_fetch_timeout_s,
            allow_private=settings.allow_private_urls,
        )

    def snapshot(self) -> dict[str, Any]:
        """Live numbers for /metrics: pages waiting and running, active jobs by status, engine state."""
        jobs = {"queued": 0, "running": 0}
        for active in self._active.values():
            jobs[active.record.status] = jobs.get(active.record.status, 0) + 1
        return {
            "pages_waiting": self.scheduler.queued,
            "pages_running": self.scheduler.running,
            "jobs": jobs,
            "engines": {name: runtime.state for name, runtime in self.engines.runtimes.items()},
            "s3": None
            if self.mirror is None
            else {
                "uploaded": self.mirror.uploaded,
                "failures": self.mirror.failures,
                "pending": self.mirror.outbox.stats[0],
            },
        }

    # --- submitting and waiting ------------------------------------------------------------------
    async def submit(
        self,
        upload: Path,
        filename: str | None,
        content_type: str,
        options: OcrOptions,
        *,
        keep_input: bool = False,
        arrived: float | None = None,
    ) -> JobRecord:
        """Validate the document, persist a job for it (taking ``upload``, or a copy with ``keep_input``) and start it.

        Raises 4xx :class:`ServiceError` for bad documents or options (422 for a language or engine that
        is not there), 503 when the chosen engine is not ready, 429 when the queue is full.
        """
        choice = self.engines.choose(options.languages, options.engine)
        self.check_accepting(arrived, choice.engine)
        page_count = await anyio.to_thread.run_sync(self._count_pages, upload, content_type)
        numbers = parse_page_spec(options.pages, page_count)
        self._check_capacity(len(numbers))
        try:
            job_id = new_id()
            record = JobRecord(
                id=job_id,
                filename=filename,
                content_type=content_type,
                page_count=page_count,
                pages=numbers,
                dpi=options.dpi,
                result_dir=self.store.relative(self.store.result_dir(job_id)),
                engine=choice.engine,
                languages=list(choice.languages),
            )
            await anyio.to_thread.run_sync(self._create, record, upload, keep_input)
            self._start(record)
        finally:
            self._reserved_jobs -= 1
            self._reserved_pages -= len(numbers)
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

    def _create(self, record: JobRecord, upload: Path, keep_input: bool = False) -> None:
        self.jobs.create(record, upload, keep_input)
        if self.mirror is not None:
            self.mirror.job_state(record.id, self.jobs.record_path(record.id))

    async def _save(self, record: JobRecord) -> None:
        """Persist the job's record (and mirror it)."""
        await anyio.to_thread.run_sync(self._save_sync, record)

    def _save_sync(self, record: JobRecord) -> None:
        self.jobs.save(record)
        if self.mirror is not None:
            self.mirror.job_state(record.id, self.jobs.record_path(record.id))

    def _save_page(self, job_id: str, number: int, payload: dict[str, Any]) -> None:
        self.jobs.save_page(job_id, number, payload)
        if self.mirror is not None:
            self.mirror.page(job_id, number, self.jobs.page_path(job_id, number))

    def _count_pages(self, path: Path, content_type: str) -> int:
        with open_document(path, content_type, self.limits) as document:
            return document.page_count

    async def wait(self, job_id: str, timeout: float | None) -> JobRecord:  # noqa: ASYNC109
        """The job's record once it has finished, or as it is when ``timeout`` passes.

        While the job has a waiter it keeps running during a drain, until shortly before the grace
        period ends; then the waiter gets the unfinished record (the job resumes after the restart).
        """
        active = self._active.get(job_id)
        if active is None:
            record = self.status(job_id)
            if record is None:
                raise ServiceError(404, "job_not_found", f"no job {job_id}")
            return record
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        active.waiters += 1
        try:
            while not active.finished.is_set():
                limit = end
                if self.draining:
                    grace_end = self._drain_started + self.settings.shutdown_grace_s - 2.0
                    limit = grace_end if limit is None else min(limit, grace_end)
                remaining = None if limit is None else limit - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                events = [active.finished.wait()] + ([] if self.draining else [self._drain_event.wait()])
                tasks = [asyncio.ensure_future(e) for e in events]
                done, pending = await asyncio.wait(tasks, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if not done:
                    break
        finally:
            active.waiters -= 1
        return active.record

    async def process(
        self,
        upload: Path,
        filename: str | None,
        content_type: str,
        options: OcrOptions,
        *,
        keep_input: bool = False,
        arrived: float | None = None,
    ) -> DocumentResult:
        """Submit and wait up to ``SYNC_TIMEOUT_S`` for the whole result (for callers that cannot take a
        202, such as the PaddleX-compatible API). The first page's error if every page failed; 504
        ``sync_timeout`` naming the job when it takes longer (the job goes on: poll ``/jobs/{id}``); 503
        when a restart interrupts it (the job resumes afterwards)."""
        record = await self.submit(upload, filename, content_type, options, keep_input=keep_input, arrived=arrived)
        record = await self.wait(record.id, self.settings.sync_timeout_s)
        if not record.finished and not self.draining:
            raise ServiceError(
                504,
                "sync_timeout",
                f"the document takes longer than SYNC_TIMEOUT_S ({self.settings.sync_timeout_s:g} s); it goes on as "
                f"job {record.id}: GET /jobs/{record.id}, or send long documents to POST /jobs",
            )
        if not record.finished:
            raise ServiceError(
                503,
                "shutting_down",
                f"the service is restarting; job {record.id} resumes afterwards",
                headers={"Retry-After": "15"},
            )
        return await self.result(record, self.settings.s3_upload_wait_s)

    # --- reading ---------------------------------------------------------------------------------
    def status(self, job_id: str) -> JobRecord | None:
        """The job as this replica knows it (memory, then local disk)."""
        active = self._active.get(job_id)
        if active is not None:
            return active.record
        try:
            return self.jobs.load(job_id)
        except ValueError:
            return None

    async def find(self, job_id: str) -> JobRecord:
        """The job from this replica, else (S3 enabled) from S3. 404 when unknown; 503 when S3 cannot be read."""
        record = self.status(job_id)
        if record is None and self.mirror is not None and is_valid_id(job_id):
            data = await self._from_s3(self.mirror.layout.job(job_id))
            record = JobRecord.from_json(data) if data is not None else None
        if record is None:
            raise ServiceError(404, "job_not_found", f"no job {job_id}")
        return record

    async def _from_s3(self, key: str) -> bytes | None:
        assert self.mirror is not None
        try:
            return await anyio.to_thread.run_sync(self.mirror.fetch, key)
        except S3Unavailable as exc:
            raise ServiceError(503, "storage_unavailable", str(exc), headers={"Retry-After": "10"}) from None

    def queue_position(self, record: JobRecord) -> int | None:
        """1-based position among jobs that have not started, or None when it has."""
        if record.status != "queued":
            return None
        waiting = sorted(
            (a.record.created_at, a.record.id) for a in self._active.values() if a.record.status == "queued"
        )
        return 1 + waiting.index((record.created_at, record.id)) if (record.created_at, record.id) in waiting else None

    async def result(self, record: JobRecord, upload_wait: float = 0) -> DocumentResult:
        """The stored result of a finished job, with ``storage`` filled in. 409 while it runs; the job's error
        when it failed; 410 when it is neither on this replica's disk nor in S3.

        ``upload_wait``: how long to wait for the result's S3 upload before reporting it ``pending``.
        """
        if record.status in ("queued", "running", "cancelled"):
            raise ServiceError(409, f"job_{record.status}", f"job {record.id} is {record.status}; no result")
        if record.status == "failed":
            error = record.error or {}
            raise ServiceError(int(error.get("status", 500)), error.get("code", "ocr_failed"), error.get("message", ""))
        folder = self.store.root / record.result_dir
        try:
            data: bytes | None = await anyio.to_thread.run_sync((folder / "result.json").read_bytes)
            local = True
        except FileNotFoundError:
            local = False
            data = None
            if self.mirror is not None and record.s3_mirrored:
                data = await self._from_s3(self.mirror.layout.result(record.result_dir, "result.json"))
        if data is None:
            raise ServiceError(410, "result_expired", f"the result of job {record.id} is no longer stored")
        result = DocumentResult.model_validate_json(data)
        result.storage = await self._storage(record, folder if local else None, upload_wait)
        return result

    async def _storage(self, record: JobRecord, folder: Path | None, upload_wait: float) -> ResultStorage:
        local = None
        if folder is not None:
            local = LocalStorage(dir=record.result_dir, files=await anyio.to_thread.run_sync(result_files, folder))
        mirror = self.mirror
        if mirror is None or not record.s3_mirrored:
            return ResultStorage(local=local, s3=S3Storage(status="disabled"))
        if local is not None:
            keys = [mirror.layout.result(record.result_dir, name) for name in local.files]
        else:
            keys = await anyio.to_thread.run_sync(mirror.list_result, record.result_dir)
        uploaded = await mirror.wait_result(record.id, upload_wait)
        s3 = S3Storage(status="uploaded" if uploaded else "pending", bucket=mirror.bucket, keys=keys)
        return ResultStorage(local=local, s3=s3)

    async def page_image(self, record: JobRecord, number: int) -> bytes:
        """Page ``number`` of a job's document as a JPEG, rendered the way the engine saw it (PDF pages at
        the job's dpi, images upright), so the result's boxes fit it when scaled to the page's width and
        height; at most ``PAGE_IMAGE_MAX_SIDE`` pixels a side.

        404 ``page_not_found`` for a page outside the job; 410 ``page_image_unavailable`` once the input
        is gone (``KEEP_JOB_INPUTS=false`` and the job has finished, or the job expired).
        """
        if number not in record.pages:
            raise ServiceError(
                404, "page_not_found", f"page {number} is not one of the {len(record.pages)} page(s) of job {record.id}"
            )
        path = self.jobs.input_path(record.id)

        gone = ServiceError(
            410,
            "page_image_unavailable",
            f"the document of job {record.id} is no longer stored (KEEP_JOB_INPUTS is off or the job expired)",
        )

        def render() -> bytes:
            if not path.exists():
                raise gone
            try:
                document = open_document(path, record.content_type, self.limits)
            except FileNotFoundError:  # removed by the retention clean-up just now
                raise gone from None
            with document:
                image = document.render(number, record.dpi)
            image.thumbnail((PAGE_IMAGE_MAX_SIDE, PAGE_IMAGE_MAX_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            return buffer.getvalue()

        return await anyio.to_thread.run_sync(render)

    async def cancel(self, job_id: str) -> JobRecord:
        """Stop a queued or running job: running pages finish, no new pages start.

        409 for a finished job, and for a job that runs on another replica (known from S3 only).
        """
        active = self._active.get(job_id)
        record = active.record if active is not None else await self.find(job_id)
        if active is None and not record.finished:
            raise ServiceError(
                409, "job_on_other_replica", f"job {job_id} runs on another replica; only that one can cancel it"
            )
        if active is None or record.finished:
            raise ServiceError(409, f"job_{record.status}", f"job {job_id} is already {record.status}")
        active.cancel_requested = True
        return active.record

    # --- running ---------------------------------------------------------------------------------
    def _start(self, record: JobRecord) -> None:
        active = _ActiveJob(record)
        self._active[record.id] = active
        active.task = asyncio.get_running_loop().create_task(self._run(active), name=f"job-{record.id}")

    async def _run(self, active: _ActiveJob) -> None:
        record = active.record
        try:
            await self._run_pages(active)
        except Exception as exc:  # the job fails, the service does not
            log.exception("job %s crashed", record.id)
            record.error = {"status": 500, "code": "ocr_failed", "message": f"internal error: {type(exc).__name__}"}
            record.status = "failed"
            record.finished_at = utc_now()
            await self._save(record)
        finally:
            self._active.pop(record.id, None)
            active.finished.set()

    async def _run_pages(self, active: _ActiveJob) -> None:
        record = active.record
        done = await anyio.to_thread.run_sync(self.jobs.done_pages, record.id)
        pending = [n for n in record.pages if n not in done]
        record.pages_done = len(record.pages) - len(pending)
        if pending:
            path = self.jobs.input_path(record.id)
            document = await anyio.to_thread.run_sync(open_document, path, record.content_type, self.limits)
            try:
                await self._recognise(active, document, pending)
            finally:
                await anyio.to_thread.run_sync(document.close)
        if active.cancel_requested:
            record.status = "cancelled"
        elif self.draining and record.pages_done < len(record.pages):
            log.info("job %s paused at %d/%d pages for shutdown", record.id, record.pages_done, len(record.pages))
            await self._save(record)
            return
        else:
            await self._finish(record)
        record.finished_at = utc_now()
        await self._save(record)
        if not self.settings.keep_job_inputs:
            # Otherwise the input stays until the retention clean-up deletes the job folder, so that
            # page_image() can show the page the boxes were found on.
            await anyio.to_thread.run_sync(self.jobs.discard_input, record.id)
        self.metrics.jobs_finished.labels(record.status).inc()
        log.info(
            "job %s %s: %d page(s), %d failed", record.id, record.status, record.pages_done, len(record.failed_pages)
        )

    async def _recognise(self, active: _ActiveJob, document: Document, pending: list[int]) -> None:
        """Run the pending pages through the scheduler, ``engine.batch_size`` pages per task (one
        pipeline call), at most ``scheduler.workers`` tasks of this job at a time; record each page."""
        record = active.record
        loop = asyncio.get_running_loop()
        document_lock = threading.Lock()  # a Document is used by one thread at a time
        runtime = self._runtime_of(record)
        languages = tuple(record.languages)
        batch_size = max(1, runtime.engine.batch_size)
        started_at: dict[int, float] = {}  # first page number of a batch -> when a worker took it
        in_flight: dict[asyncio.Future[list[dict[str, Any]]], tuple[int, ...]] = {}
        submitted: dict[tuple[int, ...], Future[list[dict[str, Any]]]] = {}
        queue = list(pending)
        timeout = self.settings.page_timeout_s
        parallel = min(self.scheduler.workers, runtime.engine.max_parallel)

        def mark_started(batch: tuple[int, ...]) -> None:
            started_at[batch[0]] = time.monotonic()
            if record.status == "queued":
                record.status = "running"
                record.started_at = utc_now()

        def run_batch(batch: tuple[int, ...]) -> list[dict[str, Any]]:
            loop.call_soon_threadsafe(mark_started, batch)
            return self._recognise_batch(
                record,
                runtime=runtime,
                languages=languages,
                document=document,
                lock=document_lock,
                batch=batch,
            )

        def in_flight_pages() -> int:
            return sum(len(batch) for batch in in_flight.values())

        while queue or in_flight:
            while queue and in_flight_pages() < parallel * batch_size and not self._stopping(active):
                batch = tuple(queue[:batch_size])
                del queue[:batch_size]
                gate = runtime.engine.page_gate  # issue-15: pages enter while the VLM server has room
                future = self.scheduler.submit(record.id, functools.partial(run_batch, batch), gate)  # issue-15
                submitted[batch] = future
                in_flight[asyncio.wrap_future(future)] = batch
            if not in_flight:
                break
            finished, _ = await asyncio.wait(in_flight, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for waiter in finished:
                batch = in_flight.pop(waiter)
                if not waiter.cancelled():  # cancelled = never started: it stays pending on disk
                    for number, payload in zip(batch, self._batch_payloads(waiter, batch, record.engine), strict=True):
                        await self._record_page(record, number, payload)
            if self._stopping(active):
                for waiter, batch in list(in_flight.items()):
                    if submitted[batch].cancel():  # not started yet: it stays pending for after a restart
                        in_flight.pop(waiter)
            now = time.monotonic()
            for waiter, batch in list(in_flight.items()):
                if batch[0] in started_at and now - started_at[batch[0]] > timeout * len(batch):
                    in_flight.pop(waiter)  # the worker finishes on its own; its result is dropped
                    waiter.cancel()
                    for number in batch:
                        error = ServiceError(504, "page_timeout", f"page {number} took longer than {timeout} s")
                        await self._record_page(record, number, self._error_payload(number, error))

    def _stopping(self, active: _ActiveJob) -> bool:
        """No new pages for a cancelled job, nor, while draining, for a job nobody waits for."""
        return active.cancel_requested or (self.draining and active.waiters == 0)

    def _runtime_of(self, record: JobRecord) -> EngineRuntime:
        """The runtime of the job's engine; a job stored under another configuration gets a new choice."""
        choice = self.engines.resume(record.engine, tuple(record.languages))
        if choice.engine != record.engine:
            log.warning("job %s: %s is not loaded; %s (%s)", record.id, record.engine, choice.engine, choice.reason)
            record.engine = choice.engine
        return self.engines.runtimes[choice.engine]

    def _recognise_batch(
        self,
        record: JobRecord,
        *,
        runtime: EngineRuntime,
        languages: tuple[str, ...],
        document: Document,
        lock: threading.Lock,
        batch: tuple[int, ...],
    ) -> list[dict[str, Any]]:
        """In a worker thread: render the batch's pages and recognise them in one engine call."""
        folder = self.store.root / record.result_dir
        began = time.perf_counter()
        images, payloads = [], {}
        for number in batch:
            try:
                with lock:  # a Document is used by one thread at a time
                    images.append((number, document.render(number, record.dpi)))
            except ServiceError as exc:  # this page is unreadable; the others go on
                payloads[number] = self._error_payload(number, exc)
        decoded = time.perf_counter()
        pages = runtime.recognize_batch([image for _, image in images], languages) if images else []
        ocr_ms = (time.perf_counter() - decoded) * 1000 / max(1, len(images))
        decode_ms = (decoded - began) * 1000 / len(batch)
        for (number, image), page in zip(images, pages, strict=True):
            if page.images:  # one folder holds every page's images: make their names unique
                page.markdown, page.images = page_image_names(number, page.markdown, page.images)
                self.store.save_images(folder, page.images)
            result = build_page(number, image.width, image.height, page.blocks, page.markdown)
            payloads[number] = {"page": result.model_dump(mode="json"), "decode_ms": decode_ms, "ocr_ms": ocr_ms}
        return [payloads[number] for number in batch]

    def _batch_payloads(
        self, waiter: asyncio.Future[list[dict[str, Any]]], batch: tuple[int, ...], engine: str
    ) -> list[dict[str, Any]]:
        """The pages' payloads, or each page's error payload when the engine call failed."""
        exc = waiter.exception()
        if exc is None:
            return waiter.result()
        if not isinstance(exc, ServiceError):
            log.error("pages %s failed in %s: %r", list(batch), engine, exc)
            first = batch[0] if len(batch) == 1 else f"{batch[0]}-{batch[-1]}"
            exc = ServiceError(500, "ocr_failed", f"the OCR engine failed on page {first}: {type(exc).__name__}")
        return [self._error_payload(number, exc) for number in batch]

    @staticmethod
    def _error_payload(number: int, error: ServiceError) -> dict[str, Any]:
        page = failed_page(number, error.message)
        return {
            "page": page.model_dump(mode="json"),
            "decode_ms": 0.0,
            "ocr_ms": 0.0,
            "error": {"status": error.status, "code": error.code, "message": error.message},
        }

    async def _record_page(self, record: JobRecord, number: int, payload: dict[str, Any]) -> None:
        await anyio.to_thread.run_sync(self._save_page, record.id, number, payload)
        record.pages_done += 1
        engine = record.engine
        if payload.get("error"):
            record.failed_pages.append(number)
            self.metrics.pages.labels(engine, "failed").inc()
        else:
            self.metrics.pages.labels(engine, "ok").inc()
            self.metrics.page_seconds.labels(engine).observe(payload["ocr_ms"] / 1000)
        await self._save(record)
        log.info("job %s page %d done (%d/%d)", record.id, number, record.pages_done, len(record.pages))

    async def _finish(self, record: JobRecord) -> None:
        """Assemble the stored pages into the result document, or fail the job when every page failed."""
        payloads = await anyio.to_thread.run_sync(lambda: [self.jobs.load_page(record.id, n) for n in record.pages])
        errors = [p["error"] for p in payloads if p.get("error")]
        record.failed_pages = sorted(n for n, p in zip(record.pages, payloads, strict=True) if p.get("error"))
        if errors and len(errors) == len(payloads):
            record.status = "failed"
            record.error = errors[0]
            return
        pages = [PageResult.model_validate(p["page"]) for p in payloads]
        markdown, text = join_pages(pages)
        created = datetime.fromisoformat(record.created_at)
        folder = self.store.root / record.result_dir
        result = DocumentResult(
            id=record.id,
            filename=record.filename,
            content_type=record.content_type,
            engine=record.engine,
            languages=record.languages,
            page_count=record.page_count,
            pages=pages,
            markdown=markdown,
            text=text,
            timings=Timings(
                decode_ms=round(sum(p["decode_ms"] for p in payloads), 1),
                ocr_ms=round(sum(p["ocr_ms"] for p in payloads), 1),
                total_ms=round((datetime.now(timezone.utc) - created).total_seconds() * 1000, 1),
            ),
            files=ResultFiles(
                json=self.store.relative(folder / "result.json"),
                markdown=self.store.relative(folder / "result.md"),
            ),
        )
        payload = result.model_dump_json(by_alias=True, indent=1, exclude={"storage"}).encode("utf-8")
        await anyio.to_thread.run_sync(self.store.save_result, folder, payload, markdown, {})
        if self.mirror is not None:  # before job.json says "succeeded": see app.storage.outbox
            await anyio.to_thread.run_sync(self.mirror.result, record.id, record.result_dir)
            record.s3_mirrored = True
        record.status = "succeeded"

    # --- lifecycle -------------------------------------------------------------------------------
    async def resume(self) -> int:
        """Restart the jobs that were queued or running when the process stopped; returns how many."""
        records = await anyio.to_thread.run_sync(self._unfinished_records)
        for record in records:
            record.status = "queued"
            self._start(record)
            log.info("job %s resumed", record.id)
        return len(records)

    def _unfinished_records(self) -> list[JobRecord]:
        records = (self.jobs.load(job_id) for job_id in self.jobs.ids())
        return sorted((r for r in records if r is not None and not r.finished), key=lambda r: r.created_at)

    def begin_drain(self) -> None:
        """Stop taking new work; jobs without a waiting request stop starting pages (they resume after
        the restart); requests already in flight are still served within ``SHUTDOWN_GRACE_S``."""
        if not self.draining:
            log.info("draining: %d job(s) active", len(self._active))
            self._drain_started = time.monotonic()
        self.draining = True
        self._drain_event.set()

    async def drain(self, grace: float) -> None:
        """Let running pages finish (at most ``grace`` seconds), checkpoint, stop the workers."""
        self.begin_drain()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
        self.scheduler.shutdown(wait=False)

    async def cleanup(self, now: datetime | None = None) -> int:
        """Delete finished jobs (and their results) older than ``RESULT_TTL_HOURS``; returns how many."""
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(hours=self.settings.result_ttl_hours)
        return await anyio.to_thread.run_sync(self._delete_older_than, cutoff)

    def _delete_older_than(self, cutoff: datetime) -> int:
        removed = 0
        for job_id in self.jobs.ids():
            if job_id in self._active:
                continue
            record = self.jobs.load(job_id)
            stamp = record.finished_at or record.created_at if record else None
            if record is None or stamp is None or datetime.fromisoformat(stamp) < cutoff:
                if record is not None:
                    shutil.rmtree(self.store.root / record.result_dir, ignore_errors=True)
                self.jobs.delete(job_id)
                removed += 1
        for day in _day_folders(self.store.root):
            if datetime.strptime(day.name, "%Y-%m-%d").replace(tzinfo=timezone.utc) + timedelta(days=1) < cutoff:
                shutil.rmtree(day, ignore_errors=True)
        return removed


def _day_folders(root: Path) -> Iterable[Path]:
    for path in root.iterdir():
        if path.is_dir() and len(path.name) == 10:
            with contextlib.suppress(ValueError):
                datetime.strptime(path.name, "%Y-%m-%d")
                yield path
