"""Reading the cells of ruled tables: every cell's content on one *sheet*, read by the engine in one call.

Each cell is cut from the straightened table image inside its rules (the rules painted out), trimmed to its
ink, and the pieces are stacked on a sheet of the paper's colour, one under the other with a gap of most of
a text line; the engine reads the sheet like a page of short lines, and every line it returns is given back
to the cell whose slot holds its middle. So a cell is read whole, by the engine the page was read with, in
one call for a table (a sheet at most ``MAX_SHEET_HEIGHT`` tall; larger tables take several), and text never
runs from one cell into the next as it can in the page's own lines.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.layout.reading_order import in_rows
from app.layout.render import table_text
from app.layout.tables import GridCell, TableGrid
from app.schemas import Block, Table, TableCell

#: Reads page images into text-line blocks (one list per image, any order): the engine the page was read with.
Reader = Callable[[Sequence[Image.Image]], list[list[Block]]]

MAX_SHEET_HEIGHT = 2400
PAD = 8


def read_tables(grids: Sequence[TableGrid], read: Reader) -> list[Block]:
    """A ``table`` block for each grid: cells with their text and page boxes, the text a line per row."""
    gray_pieces: list[np.ndarray] = []
    owners: list[tuple[int, GridCell]] = []
    for index, grid in enumerate(grids):
        for cell, piece in _cell_pieces(grid):
            gray_pieces.append(piece)
            owners.append((index, cell))
    texts: list[dict[tuple[int, int], list[Block]]] = [{} for _ in grids]
    for (index, cell), lines in zip(owners, read_pieces(gray_pieces, read), strict=True):
        texts[index][cell.row, cell.col] = lines
    blocks = []
    for grid, found in zip(grids, texts, strict=True):
        cells = []
        for cell in grid.cells:
            lines = found.get((cell.row, cell.col), [])
            text = " ".join(" ".join(line.text.split()) for line in lines)
            cells.append(
                TableCell(
                    row=cell.row,
                    col=cell.col,
                    row_span=cell.row_span,
                    col_span=cell.col_span,
                    text=text,
                    bbox=list(cell.bbox),
                )
            )
        scores = [line.score for lines in found.values() for line in lines if line.score is not None]
        table = Table(rows=grid.rows, cols=grid.cols, cells=cells)
        blocks.append(
            Block(
                bbox=list(grid.bbox),
                text=table_text(table),
                score=round(statistics.mean(scores), 4) if scores else None,
                label="table",
                table=table,
            )
        )
    return blocks


def _ink_box(piece: np.ndarray, paper: float) -> tuple[int, int, int, int] | None:
    """The box of the dark marks in a cell's piece, or ``None`` when it is empty."""
    ink = piece < min(paper - 50, 170)
    if int(ink.sum()) < 12:
        return None
    ys, xs = np.nonzero(ink)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _cell_pieces(grid: TableGrid) -> list[tuple[GridCell, np.ndarray]]:
    """The grid's non-empty cells as grey pieces trimmed to their ink."""
    gray = np.asarray(grid.image)
    paper = float(np.median(gray))
    pieces: list[tuple[GridCell, np.ndarray]] = []
    for cell in grid.cells:
        x0, y0, x1, y1 = cell.inner
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        piece = gray[max(0, y0) : y1, max(0, x0) : x1]
        box = _ink_box(piece, paper)
        if box is None:
            continue
        bx0, by0, bx1, by1 = box
        pieces.append((cell, piece[by0:by1, bx0:bx1]))
    return pieces


def read_pieces(pieces: Sequence[np.ndarray], read: Reader) -> list[list[Block]]:
    """The text lines the engine reads in each grey piece of a page (top to bottom, a row left to right):
    the pieces are stacked on sheets and read in one call."""
    if not pieces:
        return []
    paper = float(np.median(np.concatenate([piece.ravel() for piece in pieces])))
    gap = max(16, int(0.8 * statistics.median(piece.shape[0] for piece in pieces)))
    width = max(piece.shape[1] for piece in pieces) + 2 * PAD
    sheets: list[tuple[Image.Image, list[_Slot]]] = []
    group: list[tuple[int, np.ndarray]] = []
    height = PAD
    for index, piece in enumerate(pieces):
        if group and height + piece.shape[0] + gap > MAX_SHEET_HEIGHT:
            sheets.append(_sheet(group, width, gap, paper))
            group, height = [], PAD
        group.append((index, piece))
        height += piece.shape[0] + gap
    sheets.append(_sheet(group, width, gap, paper))
    found: list[list[Block]] = [[] for _ in pieces]
    for (_, slots), lines in zip(sheets, read([image for image, _ in sheets]), strict=True):
        for line in lines:
            slot = _slot_of(slots, (line.bbox[1] + line.bbox[3]) / 2)
            if slot is not None:
                found[slot.index].append(line)
    return [in_rows(lines) for lines in found]


@dataclass
class _Slot:
    index: int
    top: int
    bottom: int


def _sheet(
    pieces: Sequence[tuple[int, np.ndarray]], width: int, gap: int, paper: float
) -> tuple[Image.Image, list[_Slot]]:
    height = PAD + sum(piece.shape[0] + gap for _, piece in pieces)
    canvas = np.full((height, width), int(paper), dtype=np.uint8)
    slots = []
    y = PAD
    for index, piece in pieces:
        canvas[y : y + piece.shape[0], PAD : PAD + piece.shape[1]] = piece
        slots.append(_Slot(index, y - gap // 2, y + piece.shape[0] + gap // 2))
        y += piece.shape[0] + gap
    return Image.fromarray(canvas).convert("RGB"), slots


def _slot_of(slots: Sequence[_Slot], y: float) -> _Slot | None:
    for slot in slots:
        if slot.top <= y < slot.bottom:
            return slot
    return None
