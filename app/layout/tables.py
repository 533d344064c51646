"""Ruled tables on a page image, found with OpenCV (no model): their grid of rows and columns and merged cells.

How: the page is binarised with a local (adaptive) threshold, so uneven light and yellowish paper do not
matter; a morphological opening with a long thin kernel keeps only horizontal runs at least ``1/35`` of
the page wide (letters are shorter), another one only vertical runs; where both kinds meet in one connected
grid with at least two cells, there is a table. A skewed table (a page fed askew) is measured by the slope of
its long horizontal rules and turned straight before its rows and columns are read off the rules' positions.
Between two neighbouring grid positions a missing rule means one merged cell (``row_span``/``col_span``).

Unruled tables (columns kept apart by white space only) are not found here: the text of such a table stays
in lines, read row by row or column by column by :mod:`app.layout.reading_order`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]

MIN_RULE_FRACTION = 1 / 35  # the shortest rule, of the page's width (horizontal) or height (vertical)
MAX_CELLS = 2000  # a finer grid is graph paper or a pattern, not a table to read cell by cell


@dataclass
class GridCell:
    row: int
    col: int
    row_span: int
    col_span: int
    #: Inside the rules, in the straightened table image (``TableGrid.image``).
    inner: tuple[int, int, int, int]
    #: The cell's outline on the page (page pixels).
    bbox: Box


@dataclass
class TableGrid:
    """One ruled table: its box on the page, its rows and columns, and its cells."""

    bbox: Box
    rows: int
    cols: int
    cells: list[GridCell]
    #: The table straightened, in grey, with its rules painted white: where cells are read from.
    image: Image.Image = field(repr=False)


def find_tables(image: Image.Image) -> list[TableGrid]:
    """The ruled tables of a page image, top to bottom."""
    import cv2

    gray = np.asarray(image.convert("L"))
    binary = binarise(gray)
    height, width = binary.shape
    rule_x = max(20, int(width * MIN_RULE_FRACTION))
    rule_y = max(20, int(height * MIN_RULE_FRACTION * 0.7))
    horizontal, vertical = _rules(binary, rule_x, rule_y)
    grid = cv2.dilate(cv2.bitwise_or(horizontal, vertical), np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
    tables = []
    for index in range(1, count):
        x, y, w, h = (int(v) for v in stats[index][:4])
        if w < 2 * rule_x or h < rule_y:
            continue
        if not (horizontal[y : y + h, x : x + w].any() and vertical[y : y + h, x : x + w].any()):
            continue
        table = _read_grid(gray, (x, y, x + w, y + h), rule_x, rule_y)
        if table is not None:
            tables.append(table)
    return sorted(tables, key=lambda t: (t.bbox[1], t.bbox[0]))


def binarise(gray: np.ndarray) -> np.ndarray:
    import cv2

    block = max(15, (min(gray.shape) // 40) | 1)
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, block, 12)


def _rules(binary: np.ndarray, rule_x: int, rule_y: int) -> tuple[np.ndarray, np.ndarray]:
    """(horizontal, vertical) masks of the long straight runs in ``binary``."""
    import cv2

    horizontal = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (rule_x, 1)))
    vertical = cv2.morphologyEx(binary, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (1, rule_y)))
    # close the small breaks a scan leaves in a rule
    horizontal = cv2.morphologyEx(horizontal, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 1)))
    vertical = cv2.morphologyEx(vertical, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 9)))
    return horizontal, vertical


def _skew(horizontal: np.ndarray) -> float:
    """The slope (radians) of the long horizontal rules in the mask (0 when there are none)."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(horizontal, connectivity=8)
    width = horizontal.shape[1]
    slopes = []
    for index in range(1, count):
        if stats[index][2] < 0.5 * width:
            continue
        ys, xs = np.nonzero(labels == index)
        if np.ptp(xs) > 0:
            slopes.append(float(np.polyfit(xs, ys, 1)[0]))
    return math.atan(float(np.median(slopes))) if slopes else 0.0


def _read_grid(gray: np.ndarray, box: tuple[int, int, int, int], rule_x: int, rule_y: int) -> TableGrid | None:
    """The grid of the table whose rules lie in ``box``, or ``None`` when they do not form two cells."""
    import cv2

    margin = 6
    x0, y0 = max(0, box[0] - margin), max(0, box[1] - margin)
    x1, y1 = min(gray.shape[1], box[2] + margin), min(gray.shape[0], box[3] + margin)
    crop = gray[y0:y1, x0:x1]
    horizontal, _ = _rules(binarise(crop), rule_x, rule_y)
    angle = _skew(horizontal)
    centre = ((x1 - x0) / 2.0, (y1 - y0) / 2.0)
    turn = cv2.getRotationMatrix2D(centre, math.degrees(angle), 1.0)
    if abs(angle) > 0.002:
        crop = cv2.warpAffine(crop, turn, (x1 - x0, y1 - y0), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    binary = binarise(crop)
    horizontal, vertical = _rules(binary, rule_x, rule_y)
    ys = _positions(horizontal.sum(axis=1) / 255.0, 0.1 * horizontal.shape[1])
    if len(ys) < 2:
        return None
    min_row = min(b - a for a, b in itertools.pairwise(ys))
    xs = _positions(vertical.sum(axis=0) / 255.0, 0.5 * min_row)
    xs = _outer(xs, horizontal, axis=0)
    ys = _outer(ys, vertical, axis=1)
    rows, cols = len(ys) - 1, len(xs) - 1
    if rows < 1 or cols < 1 or not 2 <= rows * cols <= MAX_CELLS:
        return None
    cells = _cells(horizontal, vertical, xs, ys)
    if len(cells) < 2:
        return None
    back = cv2.invertAffineTransform(turn) if abs(angle) > 0.002 else None
    erased = crop.copy()
    erased[cv2.dilate(cv2.bitwise_or(horizontal, vertical), np.ones((3, 3), np.uint8)) > 0] = 255
    grid_cells = []
    for row, col, row_span, col_span in cells:
        outline = (xs[col], ys[row], xs[col + col_span], ys[row + row_span])
        pad = 3
        inner = (outline[0] + pad, outline[1] + pad, outline[2] - pad, outline[3] - pad)
        grid_cells.append(GridCell(row, col, row_span, col_span, inner, _on_page(outline, back, (x0, y0))))
    bbox = _on_page((xs[0], ys[0], xs[-1], ys[-1]), back, (x0, y0))
    return TableGrid(bbox, rows, cols, grid_cells, Image.fromarray(erased))


def _positions(profile: np.ndarray, minimum: float) -> list[int]:
    """Centres of the runs of ``profile`` at or above ``minimum`` (a rule's thickness is one run)."""
    positions = []
    start = None
    for index, value in enumerate([*list(profile), 0.0]):
        if value >= minimum and start is None:
            start = index
        elif value < minimum and start is not None:
            positions.append((start + index - 1) // 2)
            start = None
    merged: list[int] = []
    for position in positions:  # a thick or doubled rule is one rule
        if merged and position - merged[-1] <= 6:
            merged[-1] = (merged[-1] + position) // 2
        else:
            merged.append(position)
    return merged


def _outer(positions: list[int], rules: np.ndarray, axis: int) -> list[int]:
    """``positions`` with the far ends of the crossing ``rules`` added where no rule closes the table."""
    covered = np.nonzero(rules.any(axis=axis))[0]
    if not len(covered):
        return positions
    first, last = int(covered[0]), int(covered[-1])
    out = list(positions)
    if not out or out[0] - first > 12:
        out.insert(0, first)
    if last - out[-1] > 12:
        out.append(last)
    return out


def _cells(
    horizontal: np.ndarray, vertical: np.ndarray, xs: list[int], ys: list[int]
) -> list[tuple[int, int, int, int]]:
    """(row, col, row_span, col_span) of each cell: neighbouring grid positions with no rule between them merge."""
    rows, cols = len(ys) - 1, len(xs) - 1
    parent = list(range(rows * cols))
    # a rule may stray from its mean position by a few pixels (a photo's perspective tilts it)
    reach_x = max(4, min(15, min(b - a for a, b in itertools.pairwise(xs)) // 4))
    reach_y = max(4, min(15, min(b - a for a, b in itertools.pairwise(ys)) // 4))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for r in range(rows):
        for c in range(cols):
            if c + 1 < cols and not _rule_between(vertical, xs[c + 1], ys[r], ys[r + 1], reach_x, along_y=True):
                parent[find(r * cols + c + 1)] = find(r * cols + c)
            if r + 1 < rows and not _rule_between(horizontal, ys[r + 1], xs[c], xs[c + 1], reach_y, along_y=False):
                parent[find((r + 1) * cols + c)] = find(r * cols + c)
    groups: dict[int, list[tuple[int, int]]] = {}
    for r in range(rows):
        for c in range(cols):
            groups.setdefault(find(r * cols + c), []).append((r, c))
    cells = []
    for members in groups.values():
        r0, c0 = min(r for r, _ in members), min(c for _, c in members)
        r1, c1 = max(r for r, _ in members), max(c for _, c in members)
        cells.append((r0, c0, r1 - r0 + 1, c1 - c0 + 1))
    return sorted(cells)


def _rule_between(mask: np.ndarray, at: int, start: int, end: int, reach: int, *, along_y: bool) -> bool:
    """Whether a rule runs within ``reach`` of ``at`` over most of ``start..end`` (the other axis)."""
    inset = max(2, (end - start) // 8)
    if end - start <= 2 * inset:
        return True
    if along_y:
        strip = mask[start + inset : end - inset, max(0, at - reach) : at + reach + 1]
        covered = strip.any(axis=1)
    else:
        strip = mask[max(0, at - reach) : at + reach + 1, start + inset : end - inset]
        covered = strip.any(axis=0)
    return bool(covered.mean() >= 0.6)


def _on_page(box: Box, back: np.ndarray | None, offset: tuple[int, int]) -> Box:
    """``box`` of the straightened crop as an upright box on the page (around its turned corners)."""
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]], dtype=np.float64)
    if back is not None:
        corners = corners @ back[:, :2].T + back[:, 2]
    xs, ys = corners[:, 0] + offset[0], corners[:, 1] + offset[1]
    return (round(float(xs.min()), 1), round(float(ys.min()), 1), round(float(xs.max()), 1), round(float(ys.max()), 1))
