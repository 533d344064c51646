"""Application factory: routers, lifespan (background engine init), error handlers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import __version__
from app.api import compat, health, jobs, ocr, ops
from app.api.body import base64_body_limit
from app.api.errors import error_payload, http_headers, http_status
from app.api.web import add_web_page
from app.engines.base import OcrEngine
from app.engines.context import EngineContext
from app.engines.factories import build_engines
from app.engines.registry import EngineSet
from app.engines.select import build_orientation
from app.errors import ServiceError
from app.intake.receiver import DocumentReceiver
from app.jobs.retention import clean_up_periodically
from app.jobs.service import OcrService
from app.jobs.store import JobStore, build_job_store, output_fsync
from app.jobs.takeover import keep_jobs_moving
from app.logging_setup import configure_logging
from app.metrics import Metrics
from app.middleware import AdmissionMiddleware, ApiKeyMiddleware, BodyLimitMiddleware, RequestLogMiddleware
from app.settings import Settings, get_settings, warn_about_comments
from app.shutdown import GracefulStop, InFlight
from app.storage.disk import DiskMonitor
from app.storage.local import resolve_output_dir, set_fsync, sweep_incoming
from app.storage.s3.client import missing_settings
from app.storage.s3.objects import S3Objects

log = logging.getLogger("app")

# Multipart framing and the small form fields ride on top of the file itself.
_BODY_OVERHEAD = 1024 * 1024
# Requests that bring new work: refused before their body is read while draining or while the disk is bad.
WORK_PATHS = ("/ocr", "/jobs", *compat.PATHS)
# An upload still in .incoming after this long belongs to no request any more.
_STALE_UPLOAD_S = 6 * 3600


def create_app(settings: Settings | None = None, engine: OcrEngine | None = None) -> FastAPI:
    """Build the app. ``engine`` replaces the configured engines: it serves every request (embedding, tests)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    warn_about_comments(settings, log)
    metrics = Metrics()
    in_flight = InFlight()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store, disk = await anyio.to_thread.run_sync(_open_output, settings)
        engines = _engine_set(settings, engine, _engine_context(settings, store))
        log.info(
            "engines %s loading; default %s (%s); output in %s",
            ", ".join(engines.runtimes),
            engines.default.engine.name,
            engines.default.selection,
            store.repository.root,
        )
        engines.start_loading()
        # S3: loads the outbox; the client, the bucket check and the leases run in the background.
        await anyio.to_thread.run_sync(store.start)
        service = OcrService(settings, engines, store, metrics=metrics, disk=disk)
        metrics.watch(service.snapshot, vlm=engines.vlm_statuses)
        app.state.settings = settings
        app.state.service = service
        app.state.receiver = DocumentReceiver(settings, engines, store.repository.incoming)
        app.state.metrics = metrics
        app.state.disk = disk
        disk.start()
        restore_signals = GracefulStop(service, in_flight, settings.shutdown_grace_s).install(lambda: engines.settling)
        loop = asyncio.get_running_loop()
        background = [
            loop.create_task(keep_jobs_moving(service), name="jobs"),
            loop.create_task(clean_up_periodically(service), name="retention"),
            loop.create_task(_sweep_incoming_periodically(store.repository.incoming), name="incoming"),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await service.drain()
            await disk.stop()
            restore_signals()
            engines.close()

    app = FastAPI(
        title="paddleocr-vl-service",
        version=__version__,
        description="Document OCR (PDF and images) with PaddleOCR-VL on GPU and PP-OCR / Tesseract on CPU.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(ocr.router)
    app.include_router(jobs.router)
    app.include_router(compat.router)
    app.include_router(ops.router)
    add_web_page(app)
    _add_middleware(app, settings, metrics, in_flight)
    _add_error_handlers(app)
    return app


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics, in_flight: InFlight) -> None:
    # Added last = outermost: request log -> CORS -> API key -> admission -> body cap -> routes.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_upload_bytes + _BODY_OVERHEAD,
        path_limits={path: base64_body_limit(settings.max_upload_bytes) for path in (*compat.PATHS, "/ocr", "/jobs")},
    )
    app.add_middleware(AdmissionMiddleware, paths=WORK_PATHS)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value())
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"],
            expose_headers=["X-Request-ID", "X-Result-Id", "Location", "Retry-After"],
        )
    app.add_middleware(
        RequestLogMiddleware, metrics=metrics, body_timeout_s=settings.body_read_timeout_s, in_flight=in_flight
    )


def _engine_set(settings: Settings, engine: OcrEngine | None, context: EngineContext) -> EngineSet:
    if engine is not None:
        return EngineSet.single(engine, "given to create_app", settings.languages)
    built, plan = build_engines(settings, context=context)
    return EngineSet(built, plan, settings.languages, orientation=build_orientation(settings, built))


def _engine_context(settings: Settings, store: JobStore) -> EngineContext:
    """Where engines keep what they learn: ``OUTPUT_DIR/.engines``, and the bucket when S3 is configured (its own
    direct-call client; the engines' keys go under ``CLOUDRU_S3_PREFIX``)."""
    shared = None
    if not missing_settings(settings):
        secrets = [
            value
            for value in (
                settings.cloudru_s3_secret_key.get_secret_value(),
                settings.cloudru_s3_access_key.get_secret_value(),
            )
            if value
        ]
        shared = S3Objects(settings, secrets, lambda described: None)
    return EngineContext(
        state_dir=store.repository.root / ".engines",
        shared=shared,
        shared_prefix=settings.cloudru_s3_prefix,
        replica=store.ownership.replica or "local",
    )


def _open_output(settings: Settings) -> tuple[JobStore, DiskMonitor]:
    """The job store and its disk monitor (checked once); uploads a stopped process left are removed.
    Raises :class:`~app.storage.local.OutputDirError` when ``OUTPUT_DIR`` cannot be used."""
    started = time.time()
    root, fallback_from = resolve_output_dir(settings.output_dir, "output_dir" in settings.model_fields_set)
    fsync = output_fsync(settings)
    set_fsync(fsync)
    if not fsync:
        log.info(
            "files in OUTPUT_DIR are written without fsync (OUTPUT_FSYNC=%s%s)",
            str(settings.output_fsync).lower(),
            ": the S3 bucket keeps what must outlive this container" if settings.output_fsync == "auto" else "",
        )
    store = build_job_store(settings, root)
    disk = DiskMonitor(root, settings.disk_min_free_bytes, settings.disk_check_interval_s, fallback_from)
    disk.check_now()
    swept = sweep_incoming(store.repository.incoming, started)
    if swept:
        log.info("removed %d unfinished upload(s) left in %s", swept, store.repository.incoming)
    return store, disk


async def _sweep_incoming_periodically(folder: Path, every_s: float = 600) -> None:
    """Remove uploads left in ``folder`` for over ``_STALE_UPLOAD_S`` (no request holds them any more)."""
    while True:
        try:
            stale = await anyio.to_thread.run_sync(sweep_incoming, folder, time.time() - _STALE_UPLOAD_S)
            if stale:
                log.info("removed %d upload(s) unfinished for over %.0f h", stale, _STALE_UPLOAD_S / 3600)
        except OSError as exc:
            log.warning("sweeping %s failed: %s", folder, exc)
        await asyncio.sleep(every_s)


def _error(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> JSONResponse:
    body = error_payload(request.scope, status, code, message, details)
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "body_timeout",
    413: "upload_too_large",
}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(request, http_status(exc), exc.code, exc.message, headers=http_headers(exc), details=exc.details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        return _error(request, exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        field = "request"
        for item in exc.errors():
            location = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
            if location:
                field = location[-1]
            problems.append(f"{'.'.join(location) or 'request'}: {item.get('msg', 'invalid')}")
        return _error(request, 422, f"invalid_{field}", "; ".join(problems), details={"field": field})

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        """A write that failed because the disk is full or read-only is a 507, not a 500; other OS errors
        go on to :class:`RequestLogMiddleware`, which logs them and answers 500."""
        disk: DiskMonitor | None = getattr(request.app.state, "disk", None)
        error = disk.error_for(exc) if disk is not None else None
        if error is None:
            raise exc
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error(request, http_status(error), error.code, error.message, headers=http_headers(error))
