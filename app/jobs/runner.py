"""Running a job: its pending pages through the page scheduler, each finished page stored at once.

Pages run on the fair :class:`~app.scheduler.PageScheduler` (never on the event loop), ``engine.batch_size`` pages
per task, at most ``scheduler.workers`` tasks of a job at a time, rendered only when a worker takes them, so memory
stays flat for any page count. A job resumes at its first page that is not stored. All job state is changed on the
event loop; worker threads only compute pages.

A job stops starting pages when it is cancelled, when another replica has taken it over (``lost``: it then writes
nothing more), or while draining when no request waits for it (it is handed over or resumes after the restart).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import anyio

from app.cpu_turns import page_began, page_preparation
from app.documents import Document, Limits, open_document
from app.engines.base import EngineRuntime
from app.engines.registry import EngineSet
from app.errors import Internal, ServiceError, TimedOut, engine_failure
from app.exports.files import ExportPlan
from app.jobs.admission import Drain, DrainRate
from app.jobs.assembly import assemble
from app.jobs.models import JobError, JobRecord, PageOutcome, utc_now
from app.jobs.repository.base import StorageUnavailable
from app.jobs.store import JobStore
from app.metrics import Metrics
from app.results import build_page, page_image_names
from app.scheduler import PageScheduler
from app.settings import Settings
from app.storage.disk import DiskMonitor

log = logging.getLogger(__name__)


@dataclass
class ActiveJob:
    """A job running on this replica."""

    record: JobRecord
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    lost: bool = False  # another replica holds it now: stop and write nothing more
    waiters: int = 0  # HTTP requests waiting for it (sync /ocr): it keeps running while draining
    task: asyncio.Task[None] | None = None


Batch = tuple[int, ...]


class JobRunner:
    """Runs jobs' pages and records their outcomes in the job store."""

    def __init__(
        self,
        settings: Settings,
        engines: EngineSet,
        store: JobStore,
        *,
        scheduler: PageScheduler,
        limits: Limits,
        drain: Drain,
        metrics: Metrics,
        disk: DiskMonitor | None = None,
        rate: DrainRate | None = None,
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.store = store
        self.jobs = store.repository
        self.owner = store.ownership
        self.scheduler = scheduler
        self.limits = limits
        self.drain = drain
        self.metrics = metrics
        self.disk = disk
        self.rate = rate  # pages finished per second (the 429's Retry-After)
        self.exports = ExportPlan(settings.s3_export_formats, limits)

    async def run(self, active: ActiveJob, done: Callable[[ActiveJob], None]) -> None:
        """Run the job to its end (or to a pause); ``done`` is called at the end in every case."""
        record = active.record
        try:
            await self._run_pages(active)
        except StorageUnavailable as exc:  # shared store unreachable: another replica continues it later
            log.warning("job %s paused: %s", record.id, exc)
        except JobPaused as paused:
            log.warning("job %s paused: %s", record.id, paused)
        except Exception as exc:  # the job fails, the service does not
            log.exception("job %s crashed", record.id)
            if not active.lost:
                record.fail(JobError.of(Internal("ocr_failed", f"internal error: {type(exc).__name__}")))
                try:
                    await self._save(active)
                    await anyio.to_thread.run_sync(self.owner.finish, record)
                except Exception:  # its record stays as it was: it resumes (or is taken over) later
                    log.exception("job %s: its failure could not be stored", record.id)
        finally:
            if not record.finished and not active.lost and not self.drain.active:
                # Whatever stopped it here (a pause, an error while storing), the job must not stay held by a
                # replica that does not run it: another replica (or this one, later) takes it. While draining, the
                # store hands jobs back once their uploads are flushed (JobStore.close).
                try:
                    await anyio.to_thread.run_sync(self.owner.hand_back, record.id)
                except Exception:
                    log.exception("job %s: not handed back; the lease keeper hands it back", record.id)
            done(active)
            active.finished.set()

    async def _run_pages(self, active: ActiveJob) -> None:
        record = active.record
        stored = await anyio.to_thread.run_sync(self.jobs.done_pages, record)
        pending = [n for n in record.pages if n not in stored]
        record.pages_done = len(record.pages) - len(pending)
        if pending and not self.stopping(active):
            path = await anyio.to_thread.run_sync(self.jobs.input_path, record)
            if path is None:
                raise StorageUnavailable(f"the document of job {record.id} is not available")
            document = await anyio.to_thread.run_sync(open_document, path, record.content_type, self.limits)
            try:
                await self._recognise(active, document, pending)
            finally:
                await anyio.to_thread.run_sync(document.close)
        if active.lost:
            log.info("job %s stopped here: another replica runs it now", record.id)
            return
        if active.cancel_requested:
            record.status = "cancelled"
        elif record.pages_done < len(record.pages):
            log.info("job %s paused at %d/%d pages for shutdown", record.id, record.pages_done, len(record.pages))
            await self._save(active)
            return
        else:
            outcomes = await anyio.to_thread.run_sync(self._load_pages, record)
            await self._write(active, "the result", assemble, record, outcomes, self.jobs, self.exports)
        record.finished_at = record.finished_at or utc_now()
        await self._save(active)
        if not record.keep_input:
            await self._write(active, "the document's removal", self.jobs.discard_input, record)
        log.info("job %s recognised here (%s); storing its end", record.id, record.status)
        await anyio.to_thread.run_sync(self.owner.finish, record)
        self.metrics.jobs_finished.labels(record.status).inc()

    def _load_pages(self, record: JobRecord) -> list[PageOutcome]:
        return [self.jobs.load_page(record, n) for n in record.pages]

    def stopping(self, active: ActiveJob) -> bool:
        """No new pages for a cancelled or lost job, nor, while draining, for a job nobody waits for."""
        return active.cancel_requested or active.lost or (self.drain.active and active.waiters == 0)

    async def _recognise(self, active: ActiveJob, document: Document, pending: list[int]) -> None:
        """Run the pending pages, ``engine.batch_size`` pages per scheduler task (one engine call), at most
        ``scheduler.workers`` tasks of this job at a time; record each page as it comes back."""
        record = active.record
        loop = asyncio.get_running_loop()
        document_lock = threading.Lock()  # a Document is used by one thread at a time
        runtime = self._runtime_of(record)
        batch_size = max(1, runtime.engine.batch_size)
        started_at: dict[int, float] = {}  # first page number of a batch -> when a worker took it
        in_flight: dict[asyncio.Future[list[PageOutcome]], Batch] = {}
        submitted: dict[Batch, Future[list[PageOutcome]]] = {}
        queue = list(pending)
        timeout = self.settings.page_timeout_s
        parallel = min(self.scheduler.workers, runtime.engine.max_parallel)

        def mark_started(batch: Batch) -> None:
            started_at[batch[0]] = time.monotonic()
            if record.status == "queued":
                record.status = "running"
                record.started_at = utc_now()

        def run_batch(batch: Batch) -> list[PageOutcome]:
            loop.call_soon_threadsafe(mark_started, batch)
            self.owner.page_starting(record.id)
            return self._recognise_batch(record, runtime, document, document_lock, batch)

        def in_flight_pages() -> int:
            return sum(len(batch) for batch in in_flight.values())

        while queue or in_flight:
            while queue and in_flight_pages() < parallel * batch_size and not self.stopping(active):
                batch = tuple(queue[:batch_size])
                del queue[:batch_size]
                # Pages enter while the engine has room (the VLM server's adaptive limit; no gate on the CPU).
                future = self.scheduler.submit(record.id, functools.partial(run_batch, batch), runtime.engine.page_gate)
                submitted[batch] = future
                in_flight[asyncio.wrap_future(future)] = batch
            if not in_flight:
                break
            finished, _ = await asyncio.wait(in_flight, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            for waiter in finished:
                batch = in_flight.pop(waiter)
                if not waiter.cancelled():  # cancelled = never started: it stays pending
                    for outcome in self._outcomes(waiter, batch, record.engine):
                        await self._record_page(active, outcome)
            if self.stopping(active):
                for waiter, batch in list(in_flight.items()):
                    if submitted[batch].cancel():  # not started yet: it stays pending for the next run
                        in_flight.pop(waiter)
            now = time.monotonic()
            for waiter, batch in list(in_flight.items()):
                if batch[0] in started_at and now - started_at[batch[0]] > timeout * len(batch):
                    in_flight.pop(waiter)  # the worker finishes on its own; its result is dropped
                    waiter.cancel()
                    for number in batch:
                        error = JobError.of(TimedOut("page_timeout", f"page {number} took longer than {timeout:g} s"))
                        await self._record_page(active, PageOutcome.failed(number, error))

    def _runtime_of(self, record: JobRecord) -> EngineRuntime:
        """The runtime of the job's engine; a job stored under another configuration gets a new choice."""
        choice = self.engines.resume(record.engine, tuple(record.languages))
        if choice.engine != record.engine:
            log.warning("job %s: %s is not loaded; %s (%s)", record.id, record.engine, choice.engine, choice.reason)
            record.engine = choice.engine
            record.engine_reason = choice.reason
        return self.engines.runtimes[choice.engine]

    def _recognise_batch(
        self, record: JobRecord, runtime: EngineRuntime, document: Document, lock: threading.Lock, batch: Batch
    ) -> list[PageOutcome]:
        """In a worker thread: render the batch's pages and recognise them in one engine call."""
        began = time.perf_counter()
        images, outcomes = [], {}
        with page_began():  # the batch's place in the CPU turns (app.cpu_turns): pages begun earlier go first
            for number in batch:
                try:
                    with lock, page_preparation.turn():
                        images.append((number, document.render(number, record.dpi)))
                except ServiceError as exc:  # this page is unreadable; the others go on
                    outcomes[number] = PageOutcome.failed(number, JobError.of(exc))
            decoded = time.perf_counter()
            languages = tuple(record.languages)
            pages = runtime.recognize_batch([image for _, image in images], languages) if images else []
        ocr_ms = (time.perf_counter() - decoded) * 1000 / max(1, len(images))
        decode_ms = (decoded - began) * 1000 / len(batch)
        for (number, image), page in zip(images, pages, strict=True):
            if page.images:  # one folder holds every page's images: make their names unique
                page.markdown, page.images = page_image_names(number, page.markdown, page.images)
                self.jobs.save_images(record, page.images)
            # the page as read (turned upright by app.engines.orientation)
            result = build_page(number, image.width, image.height, page.blocks, page.markdown, rotation=page.rotation)
            outcomes[number] = PageOutcome(number, result, decode_ms, ocr_ms)
        return [outcomes[number] for number in batch]

    @staticmethod
    def _outcomes(waiter: asyncio.Future[list[PageOutcome]], batch: Batch, engine: str) -> list[PageOutcome]:
        """The batch's outcomes, or each page's error when the engine call failed."""
        exc = waiter.exception()
        if exc is None:
            return waiter.result()
        error = JobError.of(engine_failure(exc, batch, engine))  # engine errors -> HTTP in app.errors
        return [PageOutcome.failed(number, error) for number in batch]

    async def _record_page(self, active: ActiveJob, outcome: PageOutcome) -> None:
        record = active.record
        if active.lost:
            return
        await self._write(active, f"page {outcome.number}", self.jobs.save_page, record, outcome)
        record.pages_done += 1  # /jobs/{id} shows it from here on: the log says so first (no await in between)
        if self.rate is not None:
            self.rate.note_page()
        log.info("job %s page %d done (%d/%d)", record.id, outcome.number, record.pages_done, len(record.pages))
        engine = record.engine
        if outcome.error is not None:
            record.failed_pages.append(outcome.number)
            self.metrics.pages.labels(engine, "failed").inc()
        else:
            self.metrics.pages.labels(engine, "ok").inc()
            self.metrics.page_seconds.labels(engine).observe(outcome.ocr_ms / 1000)
        if record.pages_done < len(record.pages):
            # The last page's progress goes out with the job's end, stored next (a one-page request: one write and
            # one upload fewer); were this replica to stop in between, the pages stored say how far it got.
            await self._save(active)

    async def _save(self, active: ActiveJob) -> None:
        if not active.lost:
            await self._write(active, "the job's record", self.jobs.save, active.record)

    async def _write(self, active: ActiveJob, what: str, write: Callable[..., object], *args: object) -> None:
        """Run a blocking write in a thread. When it fails because ``OUTPUT_DIR`` is full or read-only, the job says
        so (``waiting``), waits for the disk to recover and writes again; a job that another replica may continue
        is handed over after ``DISK_WAIT_S`` (:class:`JobPaused`), as is any job when the service stops meanwhile."""
        record = active.record
        waited_since: float | None = None
        while True:
            try:
                await anyio.to_thread.run_sync(functools.partial(write, *args))
            except OSError as exc:
                if self.disk is None or not self.disk.report_error(exc):
                    raise
                if waited_since is None:
                    waited_since = time.monotonic()
                    record.waiting = f"{what} could not be stored: {self.disk.reason}; the job goes on when it can"
                    log.warning("job %s: %s", record.id, record.waiting)
                if active.lost or active.cancel_requested or self.drain.active:
                    raise JobPaused(f"{what} not stored ({self.disk.reason})") from None
                waited = time.monotonic() - waited_since
                after = self.owner.hand_over_after_s
                if after is not None and waited >= after:
                    raise JobPaused(f"{what} not stored for {waited:.0f} s; another replica may continue") from None
                await self.disk.wait_writable(timeout=5.0)
                continue
            if waited_since is not None:
                log.info("job %s: %s stored after %.0f s", record.id, what, time.monotonic() - waited_since)
                record.waiting = None
            return


class JobPaused(Exception):
    """The job stops here for now (not failed): it resumes after a restart, or on another replica."""
