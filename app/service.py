"""The OCR use case: an uploaded file on disk -> recognised pages -> a stored :class:`DocumentResult`.

Routes stay thin and call :class:`OcrService`; engines never see HTTP, and HTTP never sees engines.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio

from app.documents import Document, Limits, open_document, parse_page_spec
from app.engines.base import EnginePage, EngineRuntime
from app.errors import ServiceError
from app.results import build_page, failed_page, join_pages, page_image_names
from app.scheduler import PageScheduler
from app.schemas import DocumentResult, PageResult, ResultFiles, Timings
from app.settings import Settings
from app.storage.local import LocalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OcrOptions:
    pages: str | None = None
    dpi: int = 150


@dataclass
class _PageOutcome:
    number: int
    width: int
    height: int
    page: EnginePage | None
    decode_s: float
    ocr_s: float
    error: ServiceError | None = None


class OcrService:
    """Runs documents through the engine on a fair page scheduler and stores the results."""

    def __init__(self, settings: Settings, runtime: EngineRuntime, store: LocalStore) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = store
        self.scheduler = PageScheduler(runtime.engine.max_parallel)
        self.limits = Limits(max_pages=settings.max_pages, max_image_pixels=settings.max_image_pixels)
        self._admitted = 0

    # --- admission -------------------------------------------------------------------------------
    def check_engine(self) -> None:
        """503 unless the engine is ready: ``Retry-After`` while it initialises, the reason when it failed."""
        runtime = self.runtime
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

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one of ``MAX_QUEUED_REQUESTS`` places; beyond them the caller gets 429."""
        if self._admitted >= self.settings.max_queued_requests:
            raise ServiceError(
                429,
                "queue_full",
                f"{self._admitted} requests are already in progress; retry later",
                headers={"Retry-After": "5"},
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    @property
    def in_progress(self) -> int:
        return self._admitted

    # --- processing ------------------------------------------------------------------------------
    async def process(
        self, upload: Path, filename: str | None, content_type: str, options: OcrOptions, result_id: str
    ) -> DocumentResult:
        """OCR the document at ``upload`` and store the result; raises :class:`ServiceError` on bad input."""
        started = time.perf_counter()
        document = await anyio.to_thread.run_sync(open_document, upload, content_type, self.limits)
        try:
            numbers = parse_page_spec(options.pages, document.page_count)
            outcomes = await self._recognise(document, numbers, options.dpi, owner=result_id)
        finally:
            await anyio.to_thread.run_sync(document.close)

        failures = [o.error for o in outcomes if o.error is not None]
        if failures and len(failures) == len(outcomes):
            raise failures[0]
        pages = [self._page_result(o) for o in outcomes]
        markdown, text = join_pages(pages)
        folder = self.store.result_dir(result_id)
        result = DocumentResult(
            id=result_id,
            filename=filename,
            content_type=content_type,
            engine=self.runtime.engine.name,
            page_count=document.page_count,
            pages=pages,
            markdown=markdown,
            text=text,
            timings=Timings(
                decode_ms=round(sum(o.decode_s for o in outcomes) * 1000, 1),
                ocr_ms=round(sum(o.ocr_s for o in outcomes) * 1000, 1),
                total_ms=0.0,
            ),
            files=ResultFiles(
                json=self.store.relative(folder / "result.json"),
                markdown=self.store.relative(folder / "result.md"),
            ),
        )
        images = {name: data for o in outcomes if o.page for name, data in o.page.images.items()}
        result.timings.total_ms = round((time.perf_counter() - started) * 1000, 1)
        payload = result.model_dump_json(by_alias=True, indent=1).encode("utf-8")
        await anyio.to_thread.run_sync(self.store.save_result, folder, payload, markdown, images)
        return result

    async def _recognise(self, document: Document, numbers: list[int], dpi: int, owner: str) -> list[_PageOutcome]:
        engine = self.runtime.engine
        document_lock = threading.Lock()  # a Document is used by one thread at a time

        def run_page(number: int) -> _PageOutcome:
            began = time.perf_counter()
            try:
                with document_lock:
                    image = document.render(number, dpi)
            except ServiceError as exc:
                return _PageOutcome(number, 0, 0, None, time.perf_counter() - began, 0.0, exc)
            decoded = time.perf_counter()
            page = engine.recognize(image)
            if page.images:  # one folder holds every page's images: make their names unique
                page.markdown, page.images = page_image_names(number, page.markdown, page.images)
            return _PageOutcome(number, image.width, image.height, page, decoded - began, time.perf_counter() - decoded)

        futures = [self.scheduler.submit(owner, functools.partial(run_page, n)) for n in numbers]
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True)
        outcomes: list[_PageOutcome] = []
        for number, item in zip(numbers, results, strict=True):
            if isinstance(item, _PageOutcome):
                outcomes.append(item)
            elif isinstance(item, ServiceError):
                outcomes.append(_PageOutcome(number, 0, 0, None, 0.0, 0.0, item))
            else:
                log.error("page %d of %s failed in %s: %r", number, owner, engine.name, item)
                error = ServiceError(
                    500, "ocr_failed", f"the OCR engine failed on page {number}: {type(item).__name__}"
                )
                outcomes.append(_PageOutcome(number, 0, 0, None, 0.0, 0.0, error))
        return outcomes

    @staticmethod
    def _page_result(outcome: _PageOutcome) -> PageResult:
        if outcome.error is not None or outcome.page is None:
            message = outcome.error.message if outcome.error else "not recognised"
            return failed_page(outcome.number, message)
        return build_page(outcome.number, outcome.width, outcome.height, outcome.page.blocks, outcome.page.markdown)

    def close(self) -> None:
        self.scheduler.shutdown(wait=False)
