"""Liveness (``/health``) and readiness (``/ready``). Both read in-memory state only: they never block."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app import __version__
from app.api.deps import get_service
from app.engines.base import EngineRuntime
from app.engines.paddleocr_vl.status import VlmStatus, vlm_status_of
from app.jobs.service import OcrService
from app.schemas import (
    DiskHealth,
    EngineHealth,
    HealthResponse,
    S3Health,
    VlmAuthHealth,
    VlmConcurrencyHealth,
    VlmHealth,
    VlmProcessesHealth,
)
from app.storage.disk import DiskMonitor
from app.storage.s3.client import missing_settings

router = APIRouter(tags=["health"])

_STATUS = {"initializing": "starting", "ready": "healthy", "failed": "unhealthy"}


def s3_health(service: OcrService) -> S3Health:
    """The mirror's state from memory; ``missing`` names the required variables that are not set."""
    health = service.store.health()
    if health is None:
        return S3Health(status="not_configured", missing=missing_settings(service.settings))
    fields = asdict(health.mirror)
    if health.ownership is not None:
        fields.update(asdict(health.ownership))
    return S3Health.model_validate(fields)


def engine_health(runtime: EngineRuntime) -> EngineHealth:
    engine = runtime.engine
    return EngineHealth(
        name=engine.name,
        device=engine.device,
        state=runtime.state,
        error=runtime.error,
        init_seconds=runtime.init_seconds if runtime.init_seconds is not None else runtime.elapsed_seconds,
        selection=runtime.selection,
        detail=engine.detail,
        languages=None if engine.languages is None else sorted(engine.languages),
        vlm=vlm_health(vlm_status_of(engine)),
    )


def vlm_health(status: VlmStatus | None) -> VlmHealth | None:
    """The engine's view of its VLM server, without tokens and without the histogram."""
    if status is None:
        return None
    c = status.concurrency
    return VlmHealth(
        server=status.server,
        model=status.model,
        models_offered=None if status.models_offered is None else list(status.models_offered),
        auth=VlmAuthHealth.model_validate(asdict(status.auth)),
        concurrency=VlmConcurrencyHealth(
            mode=c.mode,
            limit=c.limit,
            maximum=c.maximum,
            in_flight=c.in_flight,
            waiting=c.waiting,
            latency_s=c.latency_s,
            baseline_s=c.baseline_s,
            signal=c.signal,
            retries=c.retries,
        ),
        page_processes=None if status.processes is None else VlmProcessesHealth(**asdict(status.processes)),
    )


def health_of(service: OcrService, disk: DiskMonitor | None = None) -> HealthResponse:
    """``status`` is ``starting`` while an engine loads, then the default engine's state decides. ``ready``
    also needs a writable ``OUTPUT_DIR`` with enough space and no stop under way."""
    engines = service.engines
    default = engines.default
    s3 = s3_health(service)
    status = "starting" if engines.settling else _STATUS[default.state]
    others = [engine_health(runtime) for runtime in engines.runtimes.values() if runtime is not default]
    not_ready = []
    if status != "healthy":
        not_ready.append(f"the engine {default.engine.name} is {default.state}")
    if disk is not None and not disk.ok:
        not_ready.append(disk.reason or "OUTPUT_DIR is not checked yet")
    if service.draining:
        not_ready.append("the service is stopping")
    return HealthResponse(
        status=status,
        ready=not not_ready,
        not_ready=not_ready,
        draining=service.draining,
        engine=engine_health(default),
        engines=[engine_health(default), *others],
        languages=list(engines.default_languages),
        paddleocr=default.state,
        s3_storage=s3.status,
        s3=s3,
        disk=None if disk is None else DiskHealth.model_validate(disk.health()),
        version=__version__,
    )


def _disk(request: Request) -> DiskMonitor | None:
    disk: DiskMonitor | None = getattr(request.app.state, "disk", None)
    return disk


@router.get("/health", response_model=HealthResponse)
async def health(request: Request, service: OcrService = Depends(get_service)) -> HealthResponse:
    """Always 200 while the process lives; ``status`` says whether the engine is ready, ``ready`` whether
    new work is taken (``not_ready`` says why not)."""
    return health_of(service, _disk(request))


@router.get("/ready", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def ready(request: Request, service: OcrService = Depends(get_service)) -> JSONResponse:
    """200 when new work is taken: the engine is ready, ``OUTPUT_DIR`` is writable with
    ``DISK_MIN_FREE_MB`` free, and no stop is under way; 503 otherwise (the body says why)."""
    report = health_of(service, _disk(request))
    return JSONResponse(report.model_dump(), status_code=200 if report.ready else 503)
