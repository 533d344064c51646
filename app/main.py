"""Application factory: routers, lifespan (background engine init), error handlers."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import __version__
from app.api import compat, health, jobs, ocr, ops
from app.api.inputs import base64_body_limit
from app.api.web import add_web_page
from app.engines.base import OcrEngine
from app.engines.registry import EngineSet
from app.engines.select import build_engines
from app.errors import ServiceError, error_payload
from app.logging_setup import configure_logging
from app.metrics import Metrics
from app.middleware import ApiKeyMiddleware, BodyLimitMiddleware, RequestLogMiddleware
from app.service import OcrService
from app.settings import Settings, get_settings
from app.storage.local import LocalStore, resolve_output_dir
from app.storage.s3 import build_mirror

log = logging.getLogger("app")

# Multipart framing and the small form fields ride on top of the file itself.
_BODY_OVERHEAD = 1024 * 1024


def create_app(settings: Settings | None = None, engine: OcrEngine | None = None) -> FastAPI:
    """Build the app. ``engine`` replaces the configured engines: it serves every request (embedding, tests)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = LocalStore(resolve_output_dir(settings.output_dir))
        if engine is not None:
            engines = EngineSet.single(engine, "given to create_app", settings.languages)
        else:
            built, plan = build_engines(settings)
            engines = EngineSet(built, plan, settings.languages)
        log.info(
            "engines %s loading; default %s (%s); output in %s",
            ", ".join(engines.runtimes),
            engines.default.engine.name,
            engines.default.selection,
            store.root,
        )
        engines.start_loading()
        mirror = build_mirror(settings, store.root)
        if mirror is not None:  # loads the outbox; the client and the bucket check run in the background
            await anyio.to_thread.run_sync(mirror.start)
        service = OcrService(settings, engines, store, metrics=metrics, mirror=mirror)
        metrics.watch(service.snapshot, vlm=engines.vlm_statuses)
        app.state.settings = settings
        app.state.service = service
        app.state.metrics = metrics
        restore_signals = _drain_on_sigterm(service)
        resumed = await service.resume()
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)
        housekeeping = asyncio.get_running_loop().create_task(_clean_up_periodically(service))
        try:
            yield
        finally:
            housekeeping.cancel()
            await service.drain(settings.shutdown_grace_s)
            if mirror is not None:  # uploads in flight get a moment; the rest stays in the outbox
                await anyio.to_thread.run_sync(mirror.close)
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
    # Added last = outermost: request log -> CORS -> API key -> body cap -> routes.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_upload_bytes + _BODY_OVERHEAD,
        path_limits={path: base64_body_limit(settings.max_upload_bytes) for path in (*compat.PATHS, "/ocr", "/jobs")},
    )
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
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    _add_error_handlers(app)
    return app


def _drain_on_sigterm(service: OcrService) -> Callable[[], None]:
    """Start draining as soon as SIGTERM/SIGINT arrives (before uvicorn waits for open requests),
    then hand the signal on to uvicorn's own handler. Returns a function that restores the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # embedded servers (tests) do not own the process signals
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(sig: int, frame: FrameType | None) -> None:
        service.begin_drain()
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)
        elif handler == signal.SIG_DFL:
            raise SystemExit(128 + sig)

    for sig in previous:
        signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


async def _clean_up_periodically(service: OcrService, every_s: float = 600) -> None:
    while True:
        try:
            removed = await service.cleanup()
            if removed:
                log.info("retention: removed %d expired job(s)", removed)
        except OSError as exc:
            log.warning("retention clean-up failed: %s", exc)
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
    413: "upload_too_large",
}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(request, exc.status, exc.code, exc.message, headers=exc.headers, details=exc.details)

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

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error: %s", type(exc).__name__)
        return _error(request, 500, "internal_error", "an unexpected error occurred; it has been logged")
