"""Pure conversions from our :class:`~app.schemas.DocumentResult` to PaddleX's ``/layout-parsing`` result.

``prunedResult`` follows PaddleX 3.3's PaddleOCR-VL result (``res.json["res"]`` without ``input_path``
and ``page_index``): ``page_count``, ``width``, ``height``, ``model_settings`` and ``parsing_res_list``
with ``block_label``, ``block_content``, ``block_bbox`` (integer ``[x1, y1, x2, y2]``), ``block_id``,
``block_order`` (1-based, None for labels PaddleX leaves out of the reading order) and ``group_id``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from app.compat.schemas import ImageInfo, LayoutParsingPage, MarkdownData, PdfInfo, PdfPageInfo
from app.schemas import PageResult

# PaddleX numbers these block labels in reading order (its VISUALIZE_ORDE_LABELS); others get None.
ORDERED_LABELS = frozenset(
    {
        "text",
        "formula",
        "inline_formula",
        "display_formula",
        "algorithm",
        "reference",
        "reference_content",
        "content",
        "abstract",
        "paragraph_title",
        "doc_title",
        "vertical_text",
        "ocr",
        "number",
        "footnote",
        "header",
        "header_image",
        "footer",
        "footer_image",
        "aside_text",
    }
)
# The pipeline's default ``markdown_ignore_labels``: left out of the Markdown and of the reading order.
DEFAULT_IGNORED_LABELS = ("number", "footnote", "header", "header_image", "footer", "footer_image", "aside_text")
# Engines that read text lines and do no layout analysis or document preprocessing.
LINE_ENGINES = frozenset({"pp-ocr", "tesseract"})

_IMAGE_REFERENCE = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']([^"']+)["']|!\[[^\]]*\]\(\s*<?([^)\s>]+)""")


def model_settings(
    engine: str,
    ignored_labels: Sequence[str] = DEFAULT_IGNORED_LABELS,
    *,
    layout_detection: bool = True,
    doc_preprocessor: bool = False,
) -> dict[str, Any]:
    """PaddleX's ``model_settings`` describing what ``engine`` did to a page.

    Line engines do no layout detection, preprocessing or chart recognition; for the VLM pipeline the
    caller passes its configuration (``VL_USE_LAYOUT_DETECTION``, orientation/unwarping switches).
    """
    layout = engine not in LINE_ENGINES and layout_detection
    return {
        "use_doc_preprocessor": engine not in LINE_ENGINES and doc_preprocessor,
        "use_layout_detection": layout,
        "use_chart_recognition": False,
        "format_block_content": False,
        "merge_layout_blocks": layout,
        "markdown_ignore_labels": list(ignored_labels),
    }


def parsing_res_list(page: PageResult, ignored_labels: Sequence[str] = DEFAULT_IGNORED_LABELS) -> list[dict[str, Any]]:
    """The page's blocks, in reading order, as PaddleX ``parsing_res_list`` entries."""
    ordered = ORDERED_LABELS.difference(ignored_labels)
    entries: list[dict[str, Any]] = []
    next_order = 1
    for block_id, block in enumerate(sorted(page.blocks, key=lambda b: b.order)):
        order: int | None = None
        if block.label in ordered:
            order = next_order
            next_order += 1
        entries.append(
            {
                "block_label": block.label,
                "block_content": block.text,
                "block_bbox": [round(v) for v in block.bbox],
                "block_id": block_id,
                "block_order": order,
                "group_id": block_id,
            }
        )
    return entries


def pruned_result(page: PageResult, settings: Mapping[str, Any]) -> dict[str, Any]:
    """One page as PaddleX's ``prunedResult``. A page that failed carries its reason under ``error``."""
    ignored = settings.get("markdown_ignore_labels", DEFAULT_IGNORED_LABELS)
    result: dict[str, Any] = {
        "page_count": None,  # PaddleX serving passes page images to the pipeline, so this is always null
        "width": page.width,
        "height": page.height,
        "model_settings": dict(settings),
        "parsing_res_list": parsing_res_list(page, ignored),
    }
    if page.error:
        result["error"] = page.error
    return result


def markdown_image_paths(markdown: str) -> list[str]:
    """Relative paths of the images a page's Markdown references (``<img src>`` and ``![](...)``), in order.

    Absolute URLs, ``data:`` URIs and paths that climb out of the folder (``..``, ``/``) are left out.
    """
    paths: list[str] = []
    for match in _IMAGE_REFERENCE.finditer(markdown):
        path = match.group(1) or match.group(2)
        if ":" in path or path.startswith("/") or ".." in path.split("/") or path in paths:
            continue
        paths.append(path)
    return paths


def data_info(content_type: str, pages: Sequence[PageResult]) -> ImageInfo | PdfInfo:
    """``dataInfo``: the image's size, or the PDF's page count and the size of each page as rendered."""
    if content_type == "application/pdf":
        return PdfInfo(numPages=len(pages), pages=[PdfPageInfo(width=p.width, height=p.height) for p in pages])
    first = pages[0] if pages else None
    return ImageInfo(width=first.width if first else 0, height=first.height if first else 0)


def layout_parsing_page(
    page: PageResult,
    settings: Mapping[str, Any],
    markdown_images: Mapping[str, str] | None = None,
    visuals: tuple[str, dict[str, str]] | None = None,
) -> LayoutParsingPage:
    """One entry of ``layoutParsingResults``.

    ``markdown_images`` maps the Markdown's relative image paths to base64 JPEG; ``visuals`` is
    ``(input image, {name: output image})`` in base64 JPEG when the client asked to ``visualize``.
    """
    return LayoutParsingPage(
        prunedResult=pruned_result(page, settings),
        markdown=MarkdownData(text=page.markdown, images=dict(markdown_images or {})),
        inputImage=visuals[0] if visuals else None,
        outputImages=visuals[1] if visuals else None,
    )
