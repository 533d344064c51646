"""The ``/layout-parsing`` use case: a PaddleX request -> :class:`OcrService` -> a PaddleX response.

Works with whichever engine serves requests. Options the engine cannot apply per request (layout
detection, orientation, unwarping, prompts, sampling) are accepted and ignored; ``prunedResult``'s
``model_settings`` says what the engine did.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import anyio

from app.compat.convert import data_info, layout_parsing_page, markdown_image_paths, model_settings
from app.compat.schemas import LayoutParsingRequest, LayoutParsingResponse, LayoutParsingResult
from app.compat.visualize import render_visuals
from app.jobs.models import OcrOptions
from app.jobs.service import OcrService
from app.schemas import DocumentResult
from app.uploads import DocumentSource, name_from_url

log = logging.getLogger(__name__)


def is_url(file: str) -> bool:
    """Whether PaddleX would treat ``file`` as a URL (an ``http(s)://`` prefix) rather than base64."""
    return file[:8].lower().startswith(("http://", "https://"))


def _markdown_images(folder: Path, result: DocumentResult) -> list[dict[str, str]]:
    """For each page, the images its Markdown references, read back from the result folder, as base64."""
    root = folder.resolve()
    pages: list[dict[str, str]] = []
    for page in result.pages:
        images: dict[str, str] = {}
        for relative in markdown_image_paths(page.markdown):
            path = (folder / relative).resolve()
            if root in path.parents and path.is_file():
                images[relative] = base64.b64encode(path.read_bytes()).decode("ascii")
        pages.append(images)
    return pages


async def layout_parsing(
    service: OcrService, request: LayoutParsingRequest, log_id: str, arrived: float | None = None
) -> tuple[LayoutParsingResponse, str]:
    """Recognise the request's document; returns the PaddleX response and our result id.

    Errors are :class:`~app.errors.ServiceError` (the route renders them in the PaddleX envelope):
    503 engine not ready, 429 queue full, 400/413/415/422 bad input (see :mod:`app.uploads`), URL
    refusals and fetch failures (see :mod:`app.url_fetch`).
    """
    settings = service.settings
    if is_url(request.file):
        service.url_policy()  # 400 first when URL input is off
        source = DocumentSource(url=request.file, filename=name_from_url(request.file))
    else:
        source = DocumentSource(base64=request.file)
    service.check_accepting(arrived)
    async with service.received(source) as document:
        content_type = document.content_type
        options = OcrOptions(dpi=settings.pdf_dpi)
        visualize = request.visualize is not False  # the page images are drawn from the upload afterwards
        result = await service.process(document, options, copy_upload=visualize, arrived=arrived)
        visuals = None
        if visualize:
            visuals = await anyio.to_thread.run_sync(
                render_visuals, document.path, content_type, service.limits, options.dpi, result.pages
            )
    folder = (service.jobs.root / (result.files.json_path or result.id)).parent
    images = await anyio.to_thread.run_sync(_markdown_images, folder, result)
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
    response = LayoutParsingResponse(
        logId=log_id,
        result=LayoutParsingResult(layoutParsingResults=pages, dataInfo=data_info(content_type, result.pages)),
    )
    return response, result.id
