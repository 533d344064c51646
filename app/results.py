"""Pure conversions: engine blocks -> ordered page results -> document Markdown and plain text."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from app.layout.reading_order import arrange
from app.layout.render import blocks_markdown, escape_markdown_line
from app.schemas import Block, PageResult

__all__ = [
    "build_page",
    "escape_markdown_line",
    "failed_page",
    "join_pages",
    "lines_markdown",
    "page_image_names",
    "reading_order",
    "rewrite_image_refs",
]


def reading_order(blocks: Sequence[Block]) -> list[list[Block]]:
    """Group blocks into line bands (top to bottom) and sort each band left to right.

    A block joins the current band when it overlaps the band's last block vertically by at least
    half the smaller height: skewed fragments of one line stay together, neighbouring lines do not.
    Returns the bands; ``order`` is set on the blocks as a side effect.
    """
    bands: list[list[Block]] = []
    for block in sorted(blocks, key=lambda b: ((b.bbox[1] + b.bbox[3]) / 2, b.bbox[0])):
        if bands and _same_line(bands[-1][-1], block):
            bands[-1].append(block)
        else:
            bands.append([block])
    order = 0
    for band in bands:
        band.sort(key=lambda b: b.bbox[0])
        for block in band:
            block.order = order
            order += 1
    return bands


def _same_line(a: Block, b: Block) -> bool:
    overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
    smaller = min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])
    return smaller > 0 and overlap >= 0.5 * smaller


def lines_markdown(bands: Sequence[Sequence[Block]]) -> tuple[str, str]:
    """(markdown, text) of a page of text lines: a band is a line; a wide vertical gap starts a paragraph."""
    if not bands:
        return "", ""
    heights = [b.bbox[3] - b.bbox[1] for band in bands for b in band]
    line_height = statistics.median(heights) if heights else 0.0
    text_lines: list[str] = []
    paragraphs: list[list[str]] = [[]]
    previous_bottom: float | None = None
    for band in bands:
        line = " ".join(b.text.strip() for b in band if b.text.strip())
        top = min(b.bbox[1] for b in band)
        if previous_bottom is not None and top - previous_bottom > line_height * 0.9 and paragraphs[-1]:
            paragraphs.append([])
        paragraphs[-1].append(line)
        text_lines.append(line)
        previous_bottom = max(b.bbox[3] for b in band)
    markdown = "\n\n".join("\n".join(escape_markdown_line(line) for line in para) for para in paragraphs if para)
    return markdown, "\n".join(text_lines)


def build_page(
    index: int, width: int, height: int, blocks: list[Block], markdown: str | None = None, *, rotation: int = 0
) -> PageResult:
    """A page result from engine blocks on an image of ``width`` x ``height`` that the engine saw turned
    ``rotation`` degrees clockwise (so its sides swap for 90 and 270). Engine Markdown, when given, is kept;
    text comes from blocks. Without it the blocks are text lines in no particular order: they are grouped
    into paragraphs in reading order (columns one after the other, :mod:`app.layout.reading_order`)."""
    if rotation % 180:
        width, height = height, width
    if markdown is None:
        ordered = arrange(blocks)
        markdown, text = blocks_markdown(ordered)
    else:
        ordered = sorted(blocks, key=lambda b: b.order)
        text = "\n".join(b.text for b in ordered if b.text.strip())
    return PageResult(
        index=index, width=width, height=height, rotation=rotation, blocks=ordered, markdown=markdown, text=text
    )


def failed_page(index: int, error: str) -> PageResult:
    return PageResult(index=index, width=0, height=0, blocks=[], markdown="", text="", error=error)


def join_pages(pages: Sequence[PageResult]) -> tuple[str, str]:
    """Document (markdown, text): pages in order, separated by a rule in Markdown and a form feed in text."""
    markdown = "\n\n---\n\n".join(p.markdown for p in pages)
    text = "\n\f\n".join(p.text for p in pages)
    return markdown, text


def page_image_names(
    page: int, markdown: str | None, images: Mapping[str, bytes]
) -> tuple[str | None, dict[str, bytes]]:
    """Make a page's image files unique within the document: ``imgs/x.jpg`` -> ``imgs/page3_x.jpg``.

    Images of all pages are saved in one result folder, and two pages can crop figures at the same
    coordinates (the VLM pipeline names them after the box). References in ``markdown`` follow.
    """
    if not images:
        return markdown, dict(images)
    renames = {}
    for name in images:
        path = PurePosixPath(name)
        renames[name] = str(path.with_name(f"page{page}_{path.name}"))
    renamed = {renames[name]: data for name, data in images.items()}
    return (rewrite_image_refs(markdown, renames) if markdown is not None else None), renamed


def rewrite_image_refs(markdown: str, renames: Mapping[str, str]) -> str:
    """Replace whole-path references to renamed images (in ``src="..."``, ``](...)`` or bare)."""
    if not renames:
        return markdown
    names = sorted(renames, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w.-])")
    return pattern.sub(lambda match: renames[match.group(1)], markdown)
