"""Lines that run across a column gutter, cut at it.

Where columns stand close, an engine's line finder can take a line of the left column and the line beside
it in the right column for one line (both PP-OCR and Tesseract do at gutters of two or three text heights),
and no reading order can put that right. Such a line is found on the page image: inside its box there is a
white gap at least :data:`~app.layout.reading_order.GUTTER_HEIGHTS` text heights wide, and somewhere in the gap
a white *corridor* opens, a strip that stays free of ink for :data:`CORRIDOR_LINES` text heights or more above
and below with text on both sides (the gutter runs down the page between columns; a wide space between two
words of a paragraph has text above or below it, a lone line's wide gap no text beside it above and below).
The line is cut there and both pieces are read again by the engine (:func:`app.layout.cells.read_pieces`): what the
engine read across the gutter may be garbled. The line's words (when the engine gave them) are kept for a piece
whose new reading they spell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.layout.cells import Reader, read_pieces
from app.layout.reading_order import GUTTER_HEIGHTS
from app.layout.tables import binarise
from app.schemas import Block

CORRIDOR_LINES = 4.0  # the shortest gutter, in text heights (about three lines of text)


def split_at_gutters(
    image: Image.Image, lines: Sequence[Block], read: Reader, height: float
) -> tuple[list[Block], bool]:
    """(``lines`` with every line that crosses a gutter cut there, whether any was cut)."""
    if not lines or height <= 1:
        return list(lines), False
    ink = binarise(np.asarray(image.convert("L"))) > 0
    lines = [_fitted(ink, line) for line in _without_shadows(lines)]
    cuts = {index: gaps for index, line in enumerate(lines) if (gaps := _gutters_in(ink, line, height))}
    if not cuts:
        return lines, False
    pieces: dict[int, list[Block]] = {}
    to_read: list[tuple[int, list[float], np.ndarray]] = []
    for index, gaps in cuts.items():
        line = lines[index]
        boxes = [_main_band(ink, box, height) for box in _pieces(line.bbox, gaps)]
        gray = np.asarray(image.convert("L"))
        for box in boxes:
            x0, y0, x1, y1 = (round(v) for v in box)
            to_read.append((index, box, gray[max(0, y0) : y1, max(0, x0) : x1]))
    if to_read:
        for (index, box, _), found in zip(to_read, read_pieces([p for _, _, p in to_read], read), strict=True):
            text = " ".join(" ".join(piece.text.split()) for piece in found)
            scores = [piece.score for piece in found if piece.score is not None]
            score = round(sum(scores) / len(scores), 4) if scores else lines[index].score
            # The engine's words of a line read across a gutter may be garbled: they are kept only where they
            # spell what the piece reads on its own.
            worded = _with_words(lines[index], box) if lines[index].words else None
            if worded is not None and worded.words and "".join(worded.text.split()) == "".join(text.split()):
                pieces.setdefault(index, []).append(worded)
            else:
                pieces.setdefault(index, []).append(Block(bbox=box, text=text, score=score, label="text"))
    out: list[Block] = []
    for index, line in enumerate(lines):
        others = [other for number, other in enumerate(lines) if number != index]
        for piece in pieces.get(index, [line]):
            fragment = piece.bbox[2] - piece.bbox[0] < 2 * height  # a letter of the next column's line
            if piece.text.strip() and not (fragment and _within(piece, others)):
                out.append(piece)
    return out, True


def _without_shadows(lines: Sequence[Block]) -> list[Block]:
    """``lines`` less those lying mostly inside a line read with more confidence: where two columns' lines
    run together, Tesseract can read the same stretch twice, once as garbage."""
    kept = []
    for line in lines:
        rivals = [o for o in lines if o is not line and (o.score or 0) > (line.score or 0) and o.table is None]
        if line.table is not None or line.lines is not None or not _within(line, rivals, 0.6):
            kept.append(line)
    return kept


def _fitted(ink: np.ndarray, line: Block) -> Block:
    """``line`` with its box's left and right sides moved onto its ink (an engine's boxes can be loose)."""
    if line.table is not None or line.lines is not None:
        return line
    x0, y0, x1, y1 = (round(v) for v in line.bbox)
    pad = max(1, (y1 - y0) // 6)
    band = ink[max(0, y0 + pad) : max(0, y1 - pad), max(0, x0) : max(0, x1)]
    if band.size == 0:
        return line
    marked = np.flatnonzero(np.asarray(band.any(axis=0)))
    if len(marked) == 0:
        return line
    left, right = max(0, x0) + int(marked[0]), max(0, x0) + int(marked[-1]) + 1
    return line.model_copy(update={"bbox": [float(left), line.bbox[1], float(right), line.bbox[3]]})


def _within(piece: Block, others: Sequence[Block], share: float = 0.5) -> bool:
    """Whether ``share`` of ``piece``'s box or more lies in one of the ``others``' boxes."""
    x0, y0, x1, y1 = piece.bbox
    area = max(1.0, (x1 - x0) * (y1 - y0))
    for other in others:
        ox0, oy0, ox1, oy1 = other.bbox
        inside = max(0.0, min(x1, ox1) - max(x0, ox0)) * max(0.0, min(y1, oy1) - max(y0, oy0))
        if inside >= share * area:
            return True
    return False


def _gutters_in(ink: np.ndarray, line: Block, height: float) -> list[tuple[int, int]]:
    """The gaps of ``line`` (x ranges) that open onto a gutter."""
    if line.table is not None or line.lines is not None:
        return []
    x0, y0, x1, y1 = (round(v) for v in line.bbox)
    pad = max(1, (y1 - y0) // 6)
    band = ink[max(0, y0 + pad) : max(0, y1 - pad), max(0, x0) : max(0, x1)]
    if band.size == 0:
        return []
    columns = np.asarray(band.any(axis=0), dtype=bool).ravel()
    marked = np.nonzero(columns)[0]
    if len(marked) < 2:
        return []
    gaps = []
    minimum = GUTTER_HEIGHTS * height
    run_start = None
    for x in range(int(marked[0]), int(marked[-1]) + 1):
        if not columns[x] and run_start is None:
            run_start = x
        elif columns[x] and run_start is not None:
            if x - run_start >= minimum and _corridor(ink, x0 + run_start, x0 + x, (y0 + y1) // 2, height):
                gaps.append((x0 + run_start, x0 + x))
            run_start = None
    return gaps


def _corridor(ink: np.ndarray, start: int, end: int, middle: int, height: float) -> bool:
    """Whether a strip a third of a text height wide somewhere in ``start..end`` stays free of ink for a
    gutter's length around ``middle`` (the column's lines start a few pixels apart, so several are tried)."""
    width = max(2, int(height / 3))
    step = max(1, int(height / 4))
    for left in range(end - step - width, start + step - 1, -step):
        strip = np.asarray(ink[:, max(0, left) : left + width].any(axis=1), dtype=bool).ravel()
        if strip[middle]:
            continue
        up = middle
        while up > 0 and not strip[up - 1]:
            up -= 1
        down = middle
        while down < len(strip) - 1 and not strip[down + 1]:
            down += 1
        if down - up >= CORRIDOR_LINES * height and _flanked(ink, (left, left + width), (up, down), height):
            return True
    return False


def _flanked(ink: np.ndarray, strip: tuple[int, int], rows: tuple[int, int], height: float) -> bool:
    """Whether text stands on both sides of the strip (within six text heights) for two text heights of its
    length or more (a gutter runs between columns; white page around one line with a wide gap is not one)."""
    (left, right), (top, bottom) = strip, rows
    reach = int(6 * height)
    left_ink = np.asarray(ink[top : bottom + 1, max(0, left - reach) : left].any(axis=1)).ravel()
    right_ink = np.asarray(ink[top : bottom + 1, right : right + reach].any(axis=1)).ravel()
    return int(np.count_nonzero(left_ink & right_ink)) >= 2 * height


def _main_band(ink: np.ndarray, box: list[float], height: float) -> list[float]:
    """``box`` narrowed vertically to its main run of inked rows: a line run together with a neighbouring
    column's line that sits a little higher or lower spans parts of two lines on each side of the cut."""
    x0, y0, x1, y1 = (round(v) for v in box)
    rows = np.asarray(ink[max(0, y0) : y1, max(0, x0) : x1].sum(axis=1)).ravel()
    if rows.size == 0 or not rows.any():
        return box
    bands: list[tuple[int, int, int]] = []  # (start, end, ink) of runs of inked rows; gaps under 1/5 height join
    start = last = None
    for y in np.flatnonzero(rows):
        if start is None or last is None or y - last > max(1, height / 5):
            if start is not None and last is not None:
                bands.append((start, last + 1, int(rows[start : last + 1].sum())))
            start = int(y)
        last = int(y)
    if start is not None and last is not None:
        bands.append((start, last + 1, int(rows[start : last + 1].sum())))
    top, bottom, _ = max(bands, key=lambda band: band[2])
    margin = max(1, int(height / 8))
    return [box[0], float(max(y0, y0 + top - margin)), box[2], float(min(y1, y0 + bottom + margin))]


def _pieces(bbox: Sequence[float], gaps: Sequence[tuple[int, int]]) -> list[list[float]]:
    """The boxes of a line cut at ``gaps``."""
    boxes = []
    left = float(bbox[0])
    for start, end in gaps:
        boxes.append([left, float(bbox[1]), float(start), float(bbox[3])])
        left = float(end)
    boxes.append([left, float(bbox[1]), float(bbox[2]), float(bbox[3])])
    return boxes


def _with_words(line: Block, box: Sequence[float]) -> Block:
    """The piece of ``line`` in ``box``: the words whose middles lie in it."""
    words = [w for w in line.words or [] if box[0] <= (w.bbox[0] + w.bbox[2]) / 2 < box[2]]
    if not words:
        return Block(bbox=list(box), text="", score=line.score, label="text")
    scores = [w.score for w in words if w.score is not None]
    return Block(
        bbox=[min(w.bbox[0] for w in words), box[1], max(w.bbox[2] for w in words), box[3]],
        text=" ".join(w.text for w in words),
        score=round(sum(scores) / len(scores), 4) if scores else line.score,
        label="text",
        words=words,
    )
