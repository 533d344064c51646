"""The OCR use case. Every document becomes a persisted job processed page by page.

``POST /jobs`` submits and returns; ``POST /ocr`` submits and waits up to ``SYNC_TIMEOUT_S``. Pages run
on the fair :class:`PageScheduler` (never on the event loop), at most ``scheduler.workers`` pages of
a job at a time and rendered only when a worker takes them, so memory stays flat for any page count.
Each finished page is written to disk at once; after a restart a job resumes at its first
unfinished page. All job state is changed on the event loop; worker threads only compute pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from app.schemas import DocumentResult, PageResult, ResultFiles, Timings
from app.settings import Settings
from app.storage.local import LocalStore, new_id
from app.url_fetch import FetchPolicy

log = logging.getLogger(__name__)


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
        self, settings: Settings, engines: EngineSet, store: LocalStore, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engines = engines
        self.store = store
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

    @property
    def active_jobs(self) -> int:
        return len(self._active)

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
            await anyio.to_thread.run_sync(self.jobs.create, record, upload, keep_input)
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
        """Submit and wait for the whole result; the first page's error if every page failed, 503 when a
        restart interrupts it (the job resumes afterwards)."""
        record = await self.submit(upload, filename, content_type, options, keep_input=keep_input, arrived=arrived)
        record = await self.wait(record.id, None)
        if not record.finished:
            raise ServiceError(
                503,
                "shutting_down",
                f"the service is restarting; job {record.id} resumes afterwards",
                headers={"Retry-After": "15"},
            )
        return await self.result(record)

    # --- reading ---------------------------------------------------------------------------------
    def status(self, job_id: str) -> JobRecord | None:
        active = self._active.get(job_id)
        if active is not None:
            return active.record
        try:
            return self.jobs.load(job_id)
        except ValueError:
            return None

    def queue_position(self, record: JobRecord) -> int | None:
        """1-based position among jobs that have not started, or None when it has."""
        if record.status != "queued":
            return None
        waiting = sorted(
            (a.record.created_at, a.record.id) for a in self._active.values() if a.record.status == "queued"
        )
        return 1 + waiting.index((record.created_at, record.id)) if (record.created_at, record.id) in waiting else None

    async def result(self, record: JobRecord) -> DocumentResult:
        """The stored result of a finished job. 409 while it runs; the job's error when it failed."""
        if record.status in ("queued", "running", "cancelled"):
            raise ServiceError(409, f"job_{record.status}", f"job {record.id} is {record.status}; no result")
        if record.status == "failed":
            error = record.error or {}
            raise ServiceError(int(error.get("status", 500)), error.get("code", "ocr_failed"), error.get("message", ""))
        path = self.store.root / record.result_dir / "result.json"
        try:
            data = await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise ServiceError(410, "result_expired", f"the result of job {record.id} is no longer stored") from None
        return DocumentResult.model_validate_json(data)

    def cancel(self, job_id: str) -> JobRecord:
        """Stop a queued or running job: running pages finish, no new pages start."""
        active = self._active.get(job_id)
        record = active.record if active is not None else self.status(job_id)
        if record is None:
            raise ServiceError(404, "job_not_found", f"no job {job_id}")
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
            await anyio.to_thread.run_sync(self.jobs.save, record)
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
            await anyio.to_thread.run_sync(self.jobs.save, record)
            return
        else:
            await self._finish(record)
        record.finished_at = utc_now()
        await anyio.to_thread.run_sync(self.jobs.save, record)
        await anyio.to_thread.run_sync(self.jobs.discard_input, record.id)
        self.metrics.jobs_finished.labels(record.status).inc()
        log.info(
            "job %s %s: %d page(s), %d failed", record.id, record.status, record.pages_done, len(record.failed_pages)
        )

    async def _recognise(self, active: _ActiveJob, document: Document, pending: list[int]) -> None:
        record = active.record
        loop = asyncio.get_running_loop()
        document_lock = threading.Lock()  # a Document is used by one thread at a time
        runtime = self._runtime_of(record)
        languages = tuple(record.languages)
        folder = self.store.root / record.result_dir
        started_at: dict[int, float] = {}
        in_flight: dict[asyncio.Future[dict[str, Any]], int] = {}
        submitted: dict[int, Future[dict[str, Any]]] = {}
        queue = list(pending)
        timeout = self.settings.page_timeout_s
        parallel = min(self.scheduler.workers, runtime.engine.max_parallel)

        def mark_started(number: int) -> None:
            started_at[number] = time.monotonic()
            if record.status == "queued":
                record.status = "running"
                record.started_at = utc_now()

        def run_page(number: int) -> dict[str, Any]:
            loop.call_soon_threadsafe(mark_started, number)
            began = time.perf_counter()
            with document_lock:
                image = document.render(number, record.dpi)
            decoded = time.perf_counter()
            page = runtime.recognize(image, languages)
            ocr_s = time.perf_counter() - decoded
            if page.images:  # one folder holds every page's images: make their names unique
                page.markdown, page.images = page_image_names(number, page.markdown, page.images)
                self.store.save_images(folder, page.images)
            result = build_page(number, image.width, image.height, page.blocks, page.markdown)
            return {
                "page": result.model_dump(mode="json"),
                "decode_ms": (decoded - began) * 1000,
                "ocr_ms": ocr_s * 1000,
            }

        while queue or in_flight:
            while queue and len(in_flight) < parallel and not self._stopping(active):
                number = queue.pop(0)
                future: Future[dict[str, Any]] = self.scheduler.submit(record.id, functools.partial(run_page, number))
                submitted[number] = future
                in_flight[asyncio.wrap_future(future)] = number
            if not in_flight:
                break
            finished, _ = await asyncio.wait(in_flight, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for waiter in finished:
                number = in_flight.pop(waiter)
                if not waiter.cancelled():  # cancelled = never started: it stays pending on disk
                    await self._record_page(record, number, self._page_payload(waiter, number, record.engine))
            if self._stopping(active):
                for waiter, number in list(in_flight.items()):
                    if submitted[number].cancel():  # not started yet: it stays pending for after a restart
                        in_flight.pop(waiter)
            now = time.monotonic()
            for waiter, number in list(in_flight.items()):
                if number in started_at and now - started_at[number] > timeout:
                    in_flight.pop(waiter)  # the worker finishes on its own; its result is dropped
                    waiter.cancel()
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

    def _page_payload(self, waiter: asyncio.Future[dict[str, Any]], number: int, engine: str) -> dict[str, Any]:
        exc = waiter.exception()
        if exc is None:
            return waiter.result()
        if not isinstance(exc, ServiceError):
            log.error("page %d failed in %s: %r", number, engine, exc)
            exc = ServiceError(500, "ocr_failed", f"the OCR engine failed on page {number}: {type(exc).__name__}")
        return self._error_payload(number, exc)

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
        await anyio.to_thread.run_sync(self.jobs.save_page, record.id, number, payload)
        record.pages_done += 1
        engine = record.engine
        if payload.get("error"):
            record.failed_pages.append(number)
            self.metrics.pages.labels(engine, "failed").inc()
        else:
            self.metrics.pages.labels(engine, "ok").inc()
            self.metrics.page_seconds.labels(engine).observe(payload["ocr_ms"] / 1000)
        await anyio.to_thread.run_sync(self.jobs.save, record)
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
        payload = result.model_dump_json(by_alias=True, indent=1).encode("utf-8")
        await anyio.to_thread.run_sync(self.store.save_result, folder, payload, markdown, {})
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
