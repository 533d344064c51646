"""Text lines -> blocks in the order a reader reads them: columns left to right, full-width parts in place.

The method is a recursive XY-cut on the lines' boxes (Nagy and Seth's, with the usual refinement for pages
that mix full-width parts and columns):

1. A region's lines are cut into *bands* where no line covers a horizontal strip of the page.
2. Consecutive bands that leave a common vertical white strip (a *gutter*) with text on both sides form a
   *slab*: the body of a column section. A full-width heading or paragraph shares no gutter with the
   bands around it, so it stays a slab of its own, in its place.
3. A slab with a gutter is cut there, and each side is read in turn (left first), recursively: three columns
   are two cuts, a column split again further down is read as such. A slab without one is read top to
   bottom, a row of boxes on the same line left to right.

A gutter is at least 0.8 of the text height wide and the text on each side at least 4 text heights wide
(narrower pieces are a row of a form, read across). Skewed pages: lines whose boxes overlap vertically
fall into one band, whose gutter is still found.

Consecutive lines in the reading order then form a block (a paragraph) when they are stacked closely
(the vertical gap is less than the page's usual line gap by 0.4 of the text height, at least 0.6 of it),
overlap horizontally and have a similar height; a block keeps its lines in ``lines`` and their words, in
order, in ``words``. Tables and blocks that already hold lines are never merged with others.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from app.schemas import Block, TextLine, Word

Interval = tuple[float, float]

GUTTER_HEIGHTS = 0.8  # the narrowest gutter, in text heights
COLUMN_HEIGHTS = 4.0  # the narrowest column, in text heights


def text_height(blocks: Sequence[Block]) -> float:
    """The median height of the plain text lines among ``blocks`` (1.0 when there are none)."""
    heights = [b.bbox[3] - b.bbox[1] for b in blocks if _is_line(b) and b.bbox[3] > b.bbox[1]]
    return float(statistics.median(heights)) if heights else 1.0


def arrange(blocks: Sequence[Block], *, keep_order: bool = False) -> list[Block]:
    """``blocks`` (text lines, tables, grouped blocks) as blocks in reading order, ``order`` set from 0.

    ``keep_order``: the lines are already in reading order (an engine that analysed the layout itself);
    they are only grouped. Otherwise they are ordered by :func:`xy_order` first.
    """
    items = [b for b in blocks if b.text.strip() or b.table is not None]
    height = text_height(items)
    ordered = list(items) if keep_order else xy_order(items, height)
    grouped = group_lines(ordered, height)
    for index, block in enumerate(grouped):
        block.order = index
    return grouped


def xy_order(blocks: Sequence[Block], height: float) -> list[Block]:
    """``blocks`` in reading order by a recursive XY-cut (see the module's docstring)."""
    if len(blocks) <= 1:
        return list(blocks)
    left_x = min(b.bbox[0] for b in blocks)
    right_x = max(b.bbox[2] for b in blocks)
    ordered: list[Block] = []
    for slab in _slabs(_bands(blocks), left_x, right_x, height):
        cut = _column_cut(slab, height)
        if cut is None:
            ordered += in_rows(slab)
        else:
            ordered += xy_order([b for b in slab if _centre_x(b) < cut], height)
            ordered += xy_order([b for b in slab if _centre_x(b) >= cut], height)
    return ordered


def _bands(blocks: Sequence[Block]) -> list[list[Block]]:
    """Groups of blocks whose vertical extents chain together, top to bottom."""
    bands: list[list[Block]] = []
    bottom = float("-inf")
    for block in sorted(blocks, key=lambda b: (b.bbox[1], b.bbox[0])):
        if bands and block.bbox[1] < bottom:
            bands[-1].append(block)
            bottom = max(bottom, block.bbox[3])
        else:
            bands.append([block])
            bottom = block.bbox[3]
    return bands


def _free(blocks: Sequence[Block], left_x: float, right_x: float) -> list[Interval]:
    """The parts of ``[left_x, right_x]`` no block covers horizontally."""
    free: list[Interval] = []
    start = left_x
    for x0, x1 in sorted((b.bbox[0], b.bbox[2]) for b in blocks):
        if x0 > start:
            free.append((start, x0))
        start = max(start, x1)
    if start < right_x:
        free.append((start, right_x))
    return free


def _intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    out = []
    for a0, a1 in a:
        for b0, b1 in b:
            lo, hi = max(a0, b0), min(a1, b1)
            if hi > lo:
                out.append((lo, hi))
    return out


def _slabs(bands: list[list[Block]], left_x: float, right_x: float, height: float) -> list[list[Block]]:
    """Consecutive bands merged while they share a gutter with text on both sides."""
    slabs: list[list[Block]] = []
    shared: list[Interval] = []
    for band in bands:
        free = _free(band, left_x, right_x)
        if slabs:
            common = _intersect(shared, free)
            merged = slabs[-1] + band
            if _interior(common, merged, height):
                slabs[-1] = merged
                shared = common
                continue
        slabs.append(list(band))
        shared = free
    return slabs


def _interior(gaps: Sequence[Interval], blocks: Sequence[Block], height: float) -> list[Interval]:
    """The gaps at least a gutter wide with blocks on both sides."""
    left_x = min(b.bbox[0] for b in blocks)
    right_x = max(b.bbox[2] for b in blocks)
    return [(lo, hi) for lo, hi in gaps if hi - lo >= GUTTER_HEIGHTS * height and lo > left_x and hi < right_x]


def _column_cut(slab: Sequence[Block], height: float) -> float | None:
    """Where a slab is cut into columns (the middle of its widest gutter), or ``None`` when it is rows."""
    left_x = min(b.bbox[0] for b in slab)
    right_x = max(b.bbox[2] for b in slab)
    gutters = _interior(_free(slab, left_x, right_x), slab, height)
    for lo, hi in sorted(gutters, key=lambda gap: gap[0] - gap[1]):
        left = [b for b in slab if b.bbox[2] <= lo]
        right = [b for b in slab if b.bbox[0] >= hi]
        wide = min(lo - left_x, right_x - hi) >= COLUMN_HEIGHTS * height
        if wide and max(len(left), len(right)) >= 2:
            return (lo + hi) / 2
    return None


def in_rows(blocks: Sequence[Block]) -> list[Block]:
    """Top to bottom; boxes that share a line (overlap by half the smaller height) left to right."""
    rows: list[list[Block]] = []
    for block in sorted(blocks, key=lambda b: ((b.bbox[1] + b.bbox[3]) / 2, b.bbox[0])):
        if rows and _same_row(rows[-1][-1], block):
            rows[-1].append(block)
        else:
            rows.append([block])
    return [block for row in rows for block in sorted(row, key=lambda b: b.bbox[0])]


def _same_row(a: Block, b: Block) -> bool:
    overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
    smaller = min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])
    return smaller > 0 and overlap >= 0.5 * smaller


def _centre_x(block: Block) -> float:
    return (block.bbox[0] + block.bbox[2]) / 2


def _is_line(block: Block) -> bool:
    return block.table is None and block.lines is None and block.label == "text"


def group_lines(ordered: Sequence[Block], height: float) -> list[Block]:
    """Consecutive text lines of ``ordered`` that belong to one paragraph, as one block each (see the module)."""
    limit = max(0.6 * height, _usual_gap(ordered, height) + 0.4 * height)
    groups: list[list[Block]] = []
    for block in ordered:
        if groups and _is_line(block) and _is_line(groups[-1][-1]) and _continues(groups[-1][-1], block, limit):
            groups[-1].append(block)
        else:
            groups.append([block])
    return [_as_block(group) if _is_line(group[0]) else group[0] for group in groups]


def _usual_gap(ordered: Sequence[Block], height: float) -> float:
    """The median vertical gap between consecutive stacked lines (0 when there are none)."""
    gaps = [
        b.bbox[1] - a.bbox[3]
        for a, b in itertools.pairwise(ordered)
        if _is_line(a) and _is_line(b) and _overlap_x(a, b) > 0 and -0.3 * height < b.bbox[1] - a.bbox[3] < 1.5 * height
    ]
    return max(0.0, float(statistics.median(gaps))) if gaps else 0.0


def _continues(a: Block, b: Block, limit: float) -> bool:
    """Whether line ``b`` continues the paragraph whose last line is ``a``."""
    ha, hb = a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1]
    if min(ha, hb) <= 0 or max(ha, hb) > 1.35 * min(ha, hb):
        return False
    gap = b.bbox[1] - a.bbox[3]
    below = (b.bbox[1] + b.bbox[3]) / 2 > (a.bbox[1] + a.bbox[3]) / 2 + 0.5 * min(ha, hb)
    narrower = min(a.bbox[2] - a.bbox[0], b.bbox[2] - b.bbox[0])
    return below and gap <= limit and _overlap_x(a, b) >= 0.3 * narrower


def _overlap_x(a: Block, b: Block) -> float:
    return min(a.bbox[2], b.bbox[2]) - max(a.bbox[0], b.bbox[0])


def _as_block(lines: Sequence[Block]) -> Block:
    """One block of ``lines``: their box, text (a line each), mean score by length, lines and words."""
    size = [max(1, len(line.text)) for line in lines]
    scores = [line.score for line in lines]
    score = None
    if all(s is not None for s in scores):
        score = round(sum(float(s or 0) * n for s, n in zip(scores, size, strict=True)) / sum(size), 4)
    words: list[Word] | None = None
    if any(line.words for line in lines):
        words = [word for line in lines for word in (line.words or [])]
    return Block(
        bbox=[
            min(line.bbox[0] for line in lines),
            min(line.bbox[1] for line in lines),
            max(line.bbox[2] for line in lines),
            max(line.bbox[3] for line in lines),
        ],
        text="\n".join(line.text.strip() for line in lines),
        score=score,
        label="text",
        lines=[TextLine(text=line.text.strip(), bbox=list(line.bbox), score=line.score) for line in lines],
        words=words,
    )
