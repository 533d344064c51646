"""Operations endpoints: ``/metrics`` (Prometheus) and ``/version``."""

from __future__ import annotations

import platform
from importlib import metadata

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app import __version__
from app.api.deps import Service

router = APIRouter(tags=["operations"])

COMPONENTS = (
    "paddleocr",
    "paddlex",
    "paddlepaddle",
    "paddlepaddle-gpu",
    "rapidocr",
    "onnxruntime",
    "tesserocr",
    "fastapi",
    "uvicorn",
)


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latencies, pages, queue depth, jobs, engine state, S3 uploads."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def installed_versions() -> dict[str, str]:
    """Versions of the OCR libraries present, read from package metadata (nothing is imported)."""
    versions = {}
    for name in COMPONENTS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@router.get("/version")
async def version(service: Service) -> dict[str, object]:
    """Service version, the default engine, every loaded engine and the versions of the OCR libraries."""
    engines = service.engines
    engine = engines.default.engine
    return {
        "service": __version__,
        "engine": {"name": engine.name, "device": engine.device},
        "engines": [{"name": r.engine.name, "device": r.engine.device} for r in engines.runtimes.values()],
        "python": platform.python_version(),
        "packages": installed_versions(),
    }
