"""A page's structure for documents that reflow (Word): headings, paragraphs, list items, captions and tables.

Pure functions. What the blocks say decides:

- **Layout labels** (PaddleOCR-VL): ``doc_title`` is a level-1 heading, ``paragraph_title`` a level-2 heading (one
  level deeper per dot of a leading ``1.2.3`` number), ``figure_title``/``table_title``/``chart_title`` captions,
  formulas their LaTeX, ``table`` a table (``Block.table``, else its HTML read as one); page furniture (``header``,
  ``footer``, ``number`` and their images) and pictures are left out, as the pipeline's Markdown leaves them out.
- **Lines** (Tesseract, PP-OCR, one block per line): consecutive lines make one paragraph until a vertical gap
  wider than 0.9 line heights, a list marker, or a line markedly taller than the page's text (1.4 times the median
  height or more), which becomes a heading, or a line above the previous one (the next column). A block that
  holds several ``lines`` is a paragraph of its own.
- Any text: a line starting with a bullet (``•``, ``-``, ``–``, ``*``, ``·``) is a bulleted list item (the marker
  dropped: Word draws it); one starting with ``1.``, ``2)``, ``a)`` is a numbered list item that keeps its number.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from app.exports.text_layer import block_plain_text, block_table
from app.schemas import Block, PageResult, Table

LINE_ENGINES = frozenset({"tesseract", "pp-ocr"})
"""Engines whose blocks are text lines (grouped into paragraphs here), not layout blocks."""
SKIPPED_LABELS = frozenset({"header", "footer", "number", "header_image", "footer_image", "image", "chart", "seal"})
CAPTION_LABELS = frozenset({"figure_title", "table_title", "chart_title", "figure_caption", "table_caption"})
NOTE_LABELS = frozenset({"footnote", "vision_footnote", "aside_text"})
HEADING_RATIO = 1.4
PARAGRAPH_GAP = 0.9

_BULLET = re.compile(r"^\s*[•●▪◦·\-–—*]\s+")
_NUMBERED = re.compile(r"^\s*(\d{1,3}|[a-zа-я])[.)]\s+\S", re.IGNORECASE)
_SECTION = re.compile(r"^\s*(\d+(?:\.\d+)*)\.?\s")

Style = Literal["body", "bullet", "numbered", "caption", "formula", "note"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int  # 1..4


@dataclass(frozen=True)
class Paragraph:
    text: str
    style: Style = "body"


@dataclass(frozen=True)
class TableElement:
    table: Table


Element = Heading | Paragraph | TableElement


def page_elements(page: PageResult, engine: str) -> list[Element]:
    """The page's elements in reading order; none for a failed page."""
    if page.error is not None:
        return []
    blocks = sorted(page.blocks, key=lambda b: b.order)
    heights = [b.bbox[3] - b.bbox[1] for b in blocks if not b.lines and b.text.strip()]
    line_height = statistics.median(heights) if heights else 0.0
    elements: list[Element] = []
    pending: list[Block] = []  # lines of the paragraph being built (line engines)
    for block in blocks:
        if engine in LINE_ENGINES and not block.lines and block_table(block) is None and block.label == "text":
            if pending and _starts_new_paragraph(pending[-1], block, line_height):
                elements.extend(_from_lines(pending, line_height, len(heights)))
                pending = []
            pending.append(block)
            continue
        if pending:
            elements.extend(_from_lines(pending, line_height, len(heights)))
            pending = []
        elements.extend(block_elements(block))
    if pending:
        elements.extend(_from_lines(pending, line_height, len(heights)))
    return elements


def block_elements(block: Block) -> list[Element]:
    """The elements of one layout block (or of a block of several lines)."""
    label = block.label
    if label in SKIPPED_LABELS:
        return []
    table = block_table(block)
    if table is not None:
        return [TableElement(table)]
    if block.lines:
        text = " ".join(line.text.strip() for line in block.lines if line.text.strip())
    else:
        text = block_plain_text(block)
    if not text.strip():
        return []
    labelled = _labelled(label, text)
    return [labelled] if labelled is not None else text_paragraphs(text)


def _labelled(label: str, text: str) -> Element | None:
    """The element a layout label makes of its text, or None for running text."""
    if label in ("doc_title", "title"):
        return Heading(_one_line(text), 1)
    if label in ("paragraph_title", "section_title"):
        return Heading(_one_line(text), section_level(text))
    if label in CAPTION_LABELS:
        return Paragraph(_one_line(text), "caption")
    if "formula" in label:
        return Paragraph(text.strip(), "formula")
    if label in NOTE_LABELS:
        return Paragraph(_one_line(text), "note")
    return None


def text_paragraphs(text: str) -> list[Element]:
    """A block of running text: one paragraph (its line breaks become spaces), or one list item per line when
    every line is one."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) > 1 and all(list_style(line) != "body" for line in lines):
        return [list_item(line) for line in lines]
    return [list_item(" ".join(lines))]


def list_style(text: str) -> Style:
    if _BULLET.match(text):
        return "bullet"
    if _NUMBERED.match(text):
        return "numbered"
    return "body"


def list_item(text: str) -> Paragraph:
    """A paragraph, styled as a list item when it starts like one (a bullet's marker dropped)."""
    style = list_style(text)
    if style == "bullet":
        return Paragraph(_BULLET.sub("", text, count=1).strip(), "bullet")
    return Paragraph(text.strip(), style)


def section_level(text: str) -> int:
    """2 for ``Summary`` or ``1. Summary``, 3 for ``1.2 Details``, at most 4."""
    match = _SECTION.match(text)
    depth = match.group(1).count(".") if match else 0
    return min(4, 2 + depth)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _starts_new_paragraph(previous: Block, block: Block, line_height: float) -> bool:
    same_line = min(previous.bbox[3], block.bbox[3]) - max(previous.bbox[1], block.bbox[1]) > 0
    if same_line:
        return False
    gap = block.bbox[1] - previous.bbox[3]
    if _tall(block, line_height) != _tall(previous, line_height):
        return True
    if gap < -line_height:  # the next column (or a block further up): a paragraph of its own
        return True
    return gap > PARAGRAPH_GAP * line_height or list_style(block.text) != "body"


def _tall(block: Block, line_height: float) -> bool:
    return line_height > 0 and block.bbox[3] - block.bbox[1] >= HEADING_RATIO * line_height


def _from_lines(lines: Sequence[Block], line_height: float, page_lines: int) -> list[Element]:
    text = " ".join(" ".join(b.text.split()) for b in lines if b.text.strip())
    if not text:
        return []
    if page_lines >= 3 and all(_tall(b, line_height) for b in lines) and len(text.split()) <= 15:
        return [Heading(text, 1 if lines[0].order == 0 else 2)]
    return [list_item(text)]
