"""Engine selection: the one place that decides which engine serves requests, and says why."""

from __future__ import annotations

from app.engines.base import OcrEngine
from app.settings import Settings


def build_engine(settings: Settings) -> tuple[OcrEngine, str]:
    """The engine named by ``OCR_ENGINE`` (``auto`` picks the best available) and the reason for it."""
    from app.engines.pp_ocr import PpOcrEngine

    engine = PpOcrEngine(parallel=settings.ocr_concurrency, threads=settings.threads_per_worker)
    if settings.ocr_engine == "pp-ocr":
        return engine, "OCR_ENGINE=pp-ocr"
    return engine, "auto: pp-ocr is the CPU engine that ships with its models"
