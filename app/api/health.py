"""Liveness (``/health``) and readiness (``/ready``). Both read in-memory state only: they never block."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app import __version__
from app.api.deps import get_service
from app.engines.base import EngineRuntime
from app.jobs.service import OcrService
from app.schemas import EngineHealth, HealthResponse, S3Health
from app.storage.s3_client import missing_settings

router = APIRouter(tags=["health"])

_STATUS = {"initializing": "starting", "ready": "healthy", "failed": "unhealthy"}


def s3_health(service: OcrService) -> S3Health:
    """The mirror's state from memory; ``missing`` names the required variables that are not set."""
    if not service.store.shared:
        return S3Health(status="not_configured", missing=missing_settings(service.settings))
    return S3Health.model_validate(service.store.health())


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
