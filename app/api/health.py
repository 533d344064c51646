"""Liveness (``/health``) and readiness (``/ready``). Both read in-memory state only: they never block."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app import __version__
from app.api.deps import get_service
from app.engines.base import EngineRuntime
from app.engines.vl_status import VlmStatus
from app.schemas import EngineHealth, HealthResponse, S3Health, VlmAuthHealth, VlmConcurrencyHealth, VlmHealth
from app.service import OcrService
from app.storage.s3 import missing_settings

router = APIRouter(tags=["health"])

_STATUS = {"initializing": "starting", "ready": "healthy", "failed": "unhealthy"}


def s3_health(service: OcrService) -> S3Health:
    """The mirror's state from memory; ``missing`` names the required variables that are not set."""
    if service.mirror is None:
        return S3Health(status="not_configured", missing=missing_settings(service.settings))
    return S3Health.model_validate(service.mirror.health())


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
        vlm=vlm_health(engine.vlm_status()),
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
        ),
    )


def health_of(service: OcrService) -> HealthResponse:
    """``status`` is ``starting`` while an engine loads, then the default engine's state decides."""
    engines = service.engines
    default = engines.default
    s3 = s3_health(service)
    status = "starting" if engines.settling else _STATUS[default.state]
    others = [engine_health(runtime) for runtime in engines.runtimes.values() if runtime is not default]
    return HealthResponse(
        status=status,
        engine=engine_health(default),
        engines=[engine_health(default), *others],
        languages=list(engines.default_languages),
        paddleocr=default.state,
        s3_storage=s3.status,
        s3=s3,
        version=__version__,
    )


@router.get("/health", response_model=HealthResponse)
async def health(service: OcrService = Depends(get_service)) -> HealthResponse:
    """Always 200 while the process lives; ``status`` says whether the engine is ready."""
    return health_of(service)


@router.get("/ready", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def ready(service: OcrService = Depends(get_service)) -> JSONResponse:
    """200 when the engine is ready to take OCR requests, 503 otherwise."""
    report = health_of(service)
    return JSONResponse(report.model_dump(), status_code=200 if report.status == "healthy" else 503)
