"""The ``/layout-parsing`` answer: a finished job's result in the shape of PaddleX's response.

Works with whichever engine served the job. Options the engine cannot apply per request (layout detection,
orientation, unwarping, prompts, sampling) are accepted and ignored; ``prunedResult``'s ``model_settings`` says
what the engine did. The document comes in and runs as for ``POST /ocr`` (:mod:`app.api.compat`).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import anyio

from app.compat.convert import data_info, layout_parsing_page, markdown_image_paths, model_settings
from app.compat.schemas import LayoutParsingResponse, LayoutParsingResult
from app.compat.visualize import render_visuals
from app.documents import Limits
from app.intake.sources import ReceivedDocument
from app.jobs.models import JobRecord
from app.jobs.service import OcrService
from app.schemas import DocumentResult
from app.settings import Settings

log = logging.getLogger(__name__)

Visuals = list[tuple[str, dict[str, str]] | None]
"""Per page: the page image and ``{"layout_order_res": ...}`` (base64 JPEG); None for a page that failed."""


def _base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


async def markdown_images(service: OcrService, record: JobRecord, result: DocumentResult) -> list[dict[str, str]]:
    """For each page, the images its Markdown references (relative path -> base64), read from the job's result."""
    pages: list[dict[str, str]] = []
    for page in result.pages:
        images: dict[str, str] = {}
        for relative in markdown_image_paths(page.markdown):  # no absolute paths, no '..'
            path = await service.result_file(record, relative)
            if path is not None:
                images[relative] = await anyio.to_thread.run_sync(_base64, path)
        pages.append(images)
    return pages


async def page_visuals(document: ReceivedDocument, limits: Limits, dpi: int, result: DocumentResult) -> Visuals:
    """The pages of the received document drawn again at ``dpi``, each with its blocks in reading order."""
    return await anyio.to_thread.run_sync(
        render_visuals, document.path, document.content_type, limits, dpi, result.pages
    )


def layout_parsing_response(
    log_id: str,
    result: DocumentResult,
    settings: Settings,
    images: list[dict[str, str]],
    visuals: Visuals | None = None,
) -> LayoutParsingResponse:
    """PaddleX's success envelope for ``result``, with each page's Markdown ``images`` and, when drawn, its
    ``visuals``; ``model_settings`` tells what the engine did (from the ``VL_USE_*`` settings for the VLM)."""
    page_settings = model_settings(
        result.engine,
        layout_detection=settings.vl_use_layout_detection,
        doc_preprocessor=settings.vl_use_doc_orientation_classify or settings.vl_use_doc_unwarping,
    )
    pages = [
        layout_parsing_page(page, page_settings, images[i], visuals[i] if visuals else None)
        for i, page in enumerate(result.pages)
    ]
    log.info("layout-parsing log_id=%s id=%s pages=%d visualize=%s", log_id, result.id, len(pages), bool(visuals))
    return LayoutParsingResponse(
        logId=log_id,
        result=LayoutParsingResult(layoutParsingResults=pages, dataInfo=data_info(result.content_type, result.pages)),
    )
