"""Engine name -> factory: the one map of the engines this service can build, by the names ``OCR_ENGINE`` uses.

Adding an engine: a module with an :class:`~app.engines.base.OcrEngine`, a factory here, its name in
``Settings.ocr_engine`` (a unit test keeps the two in step), and its measured figures in ``measured.json``.
Factories import their engine's module when called, so a service that does not load an engine never imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from app.engines.base import OcrEngine
from app.engines.context import EngineContext
from app.engines.select import EnginePlan, MachineFacts, gather_facts, plan_engines
from app.settings import Settings

EngineFactory = Callable[[Settings, EngineContext], OcrEngine]


def _paddleocr_vl(settings: Settings, context: EngineContext) -> OcrEngine:
    from app.engines.paddleocr_vl.engine import PaddleOcrVlEngine

    return PaddleOcrVlEngine(settings, context)


def _tesseract(settings: Settings, context: EngineContext) -> OcrEngine:
    from app.engines.tesseract import TesseractEngine, find_tessdata

    return TesseractEngine(
        find_tessdata(settings.tessdata_dir),
        parallel=settings.ocr_concurrency,
        psm=settings.tesseract_psm,
        default_languages=settings.languages,
        timeout_s=settings.page_timeout_s,
    )


def _pp_ocr(settings: Settings, context: EngineContext) -> OcrEngine:
    from app.engines.pp_ocr import PpOcrEngine

    return PpOcrEngine(
        parallel=settings.ocr_concurrency,
        threads=settings.threads_per_worker,
        textline_orientation=settings.pp_ocr_textline_orientation,
    )


FACTORIES: dict[str, EngineFactory] = {"paddleocr-vl": _paddleocr_vl, "pp-ocr": _pp_ocr, "tesseract": _tesseract}


def build_engine(name: str, settings: Settings, context: EngineContext | None = None) -> OcrEngine:
    """One engine by name, configured from the settings (``context``: where it may keep state); loading is left to
    its runtime. ``KeyError``: no such engine (the settings allow only the names of :data:`FACTORIES`)."""
    return FACTORIES[name](settings, context or EngineContext())


def build_engines(
    settings: Settings, facts: MachineFacts | None = None, context: EngineContext | None = None
) -> tuple[list[OcrEngine], EnginePlan]:
    """The engines of :func:`~app.engines.select.plan_engines` for these settings, constructed (not loaded), and
    the plan."""
    plan = plan_engines(settings.ocr_engine, settings.cpu_engines, settings.vl_server_url, facts or gather_facts())
    return [build_engine(name, settings, context) for name in plan.engines], plan
