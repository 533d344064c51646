"""Where the recognised text stands on a page: lines of words with their horizontal extents and a vertical band.

Pure geometry in page pixels (the frame of the result's boxes: the page as it was read, turned upright). The PDF
text layer (:mod:`app.exports.pdf`) draws each word across its own extent, on one baseline and one size per
line, so that a viewer's search and selection find it where it stands. What a block offers decides how exact
that is:

1. **Words** (Tesseract, PP-OCR): each word at its own box; words are grouped into lines by the block's
   ``lines`` when given, else by vertical overlap.
2. **Lines** without words: each line across its box (the spaces inside it fall where the font puts them).
3. **A box and text only** (PaddleOCR-VL): the text is wrapped into as many lines as the box holds, estimated from
   its size and the number of characters, and spread over the box.
4. **Tables** (``Block.table``, or a table block's HTML): each cell inside its own box when known, else inside its
   share of the table's box (rows and columns of equal size).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.layout.html_tables import parse_html_table, strip_tags
from app.schemas import Block, PageResult, Table, TextLine, Word

CHAR_WIDTH_EM = 0.55
"""Mean advance of a character in ems (proportional Latin and Cyrillic fonts): estimates lines from a box."""
LINE_PITCH_EM = 1.25
"""Baseline distance in ems of running text."""
_NO_TEXT_LABELS = frozenset({"image", "chart", "seal", "header_image", "footer_image"})
_FORMULA_DELIMITERS = re.compile(r"^\s*\${1,2}|\${1,2}\s*$")


@dataclass(frozen=True)
class PlacedWord:
    """A word (or a run of words with spaces) to be drawn from ``x0`` to ``x1``."""

    text: str
    x0: float
    x1: float


@dataclass(frozen=True)
class PlacedLine:
    """A line of text: its vertical band (``top`` to ``bottom``) and its words left to right."""

    top: float
    bottom: float
    words: tuple[PlacedWord, ...]

    @property
    def text(self) -> str:
        return " ".join(word.text for word in self.words)


def page_text_lines(page: PageResult) -> list[PlacedLine]:
    """Every line of text of ``page`` in reading order (blocks in their ``order``); none for a failed page."""
    if page.error is not None:
        return []
    lines: list[PlacedLine] = []
    for block in sorted(page.blocks, key=lambda b: b.order):
        lines.extend(block_text_lines(block))
    return [line for line in lines if line.words and line.bottom > line.top]


def block_text_lines(block: Block) -> list[PlacedLine]:
    """The lines of one block (see the module docstring for the four cases)."""
    table = block_table(block)
    if table is not None:
        return table_lines(table, block.bbox)
    if block.words:
        return word_lines(block.words, block.lines)
    if block.lines:
        return [line for entry in block.lines for line in spread_text(entry.text, entry.bbox, single=True)]
    return spread_text(block_plain_text(block), block.bbox)


def block_table(block: Block) -> Table | None:
    """The block's table: ``Block.table``, else the HTML of a ``table`` block read as one; None for other blocks."""
    if block.table is not None and block.table.cells:
        return block.table
    if block.label == "table":
        return parse_html_table(block.text)
    return None


def block_plain_text(block: Block) -> str:
    """The block's text as a reader sees it: no HTML tags, no formula delimiters, nothing for pictures."""
    if block.label in _NO_TEXT_LABELS:
        return ""
    text = strip_tags(block.text)
    if "formula" in block.label:
        text = _FORMULA_DELIMITERS.sub("", text).strip()
    return text.strip()


def word_lines(words: Sequence[Word], lines: Sequence[TextLine] | None = None) -> list[PlacedLine]:
    """Words grouped into lines: each to the given line it overlaps most vertically, else by vertical overlap
    with the line being built (words come in reading order). A line's band spans its words (or its box)."""
    groups: list[list[Word]] = []
    if lines:
        bands = [(line.bbox[1], line.bbox[3]) for line in lines]
        groups = [[] for _ in lines]
        for word in words:
            nearest = max(
                range(len(bands)), key=lambda i: (_overlap(word.bbox, bands[i]), -_distance(word.bbox, bands[i]))
            )
            groups[nearest].append(word)
        placed: list[PlacedLine] = []
        for line, (top, bottom), group in zip(lines, bands, groups, strict=True):
            if group:
                placed.append(_placed(group, top, bottom))
            else:
                placed.extend(spread_text(line.text, line.bbox, single=True))
        return placed
    for word in words:
        if groups and _same_band(word.bbox, groups[-1]):
            groups[-1].append(word)
        else:
            groups.append([word])
    return [_placed(group, min(w.bbox[1] for w in group), max(w.bbox[3] for w in group)) for group in groups]


def _placed(group: Sequence[Word], top: float, bottom: float) -> PlacedLine:
    ordered = sorted((w for w in group if w.text.strip()), key=lambda w: w.bbox[0])
    top = min([top] + [w.bbox[1] for w in ordered])
    bottom = max([bottom] + [w.bbox[3] for w in ordered])
    return PlacedLine(top, bottom, tuple(PlacedWord(w.text.strip(), w.bbox[0], w.bbox[2]) for w in ordered))


def _overlap(box: Sequence[float], band: tuple[float, float]) -> float:
    return min(box[3], band[1]) - max(box[1], band[0])


def _distance(box: Sequence[float], band: tuple[float, float]) -> float:
    return abs((box[1] + box[3]) / 2 - (band[0] + band[1]) / 2)


def _same_band(box: Sequence[float], group: Sequence[Word]) -> bool:
    last = group[-1].bbox
    top, bottom = min(w.bbox[1] for w in group), max(w.bbox[3] for w in group)
    overlap = min(box[3], bottom) - max(box[1], top)
    smaller = min(box[3] - box[1], bottom - top)
    return smaller > 0 and overlap >= 0.5 * smaller and box[0] >= last[0] - 0.5 * (last[3] - last[1])


def spread_text(text: str, bbox: Sequence[float], *, single: bool = False) -> list[PlacedLine]:
    """``text`` laid over ``bbox``: as many lines as the box holds (one with ``single``), wrapped between words
    with about as many characters each, the bands spread evenly from the top. A band is at most as tall as the
    width of its line allows (so a short word in a tall box gets no giant font); the last line of a wrapped
    paragraph covers the share of the width its characters need."""
    words = text.split()
    if not words or len(bbox) < 4:
        return []
    x0, y0, x1, y1 = (float(v) for v in bbox[:4])
    width, height = x1 - x0, y1 - y0
    if width <= 0 or height <= 0:
        return []
    chars = len(" ".join(words))
    explicit = [" ".join(line.split()) for line in text.split("\n") if line.strip()]
    count = (
        1 if single else max(len(explicit), round(math.sqrt(chars * CHAR_WIDTH_EM * height / (LINE_PITCH_EM * width))))
    )
    count = max(1, min(count, len(words), max(1, int(height // 4))))
    rows = [" ".join(words)] if count == 1 else explicit if count == len(explicit) else _wrap(words, count)
    pitch = height / len(rows)
    longest = max(len(row) for row in rows)
    placed = []
    for index, row in enumerate(rows):
        share = 1.0 if index < len(rows) - 1 or len(rows) == 1 else min(1.0, len(row) / max(1, longest))
        row_width = width * share
        band = min(pitch, LINE_PITCH_EM * row_width / max(1, len(row) * CHAR_WIDTH_EM) * 1.2)
        top = y0 + index * pitch + (pitch - band) / 2
        placed.append(PlacedLine(top, top + band, (PlacedWord(row, x0, x0 + row_width),)))
    return placed


def _wrap(words: Sequence[str], count: int) -> list[str]:
    """``words`` in ``count`` lines (or fewer) of about equal length, breaking between words."""
    total = len(" ".join(words))
    rows: list[list[str]] = [[]]
    used = 0
    for word in words:
        if rows[-1] and len(rows) < count and used + len(word) / 2 > total * len(rows) / count:
            rows.append([])
        rows[-1].append(word)
        used += len(word) + 1
    return [" ".join(row) for row in rows if row]


def table_lines(table: Table, bbox: Sequence[float]) -> list[PlacedLine]:
    """A table's cells, row by row: each inside its own box, or its share of the table's box."""
    x0, y0, x1, y1 = (float(v) for v in bbox[:4])
    rows, cols = max(1, table.rows), max(1, table.cols)
    row_height, col_width = (y1 - y0) / rows, (x1 - x0) / cols
    placed: list[PlacedLine] = []
    for cell in table.cells:
        if not cell.text.strip():
            continue
        if cell.bbox is not None and len(cell.bbox) >= 4:
            box = list(cell.bbox[:4])
        else:
            left, top = x0 + cell.col * col_width, y0 + cell.row * row_height
            inset_x, inset_y = 0.06 * col_width, 0.12 * row_height
            box = [
                left + inset_x,
                top + inset_y,
                left + cell.col_span * col_width - inset_x,
                top + cell.row_span * row_height - inset_y,
            ]
        placed.extend(spread_text(cell.text, box))
    return placed
