"""The layout step for engines that read text lines: a page's lines -> tables, paragraphs, reading order, Markdown.

Runs after the engine (and after the page was turned upright) in :meth:`app.engines.base.EngineRuntime.
recognize_batch`, on the image the engine read:

1. ruled tables are found on the image (:mod:`app.layout.tables`); the lines that lie in one are dropped
   and its cells read again, whole, by the same engine (:mod:`app.layout.cells`);
2. look-alike letters of the other script are put right in words of a Cyrillic text
   (:mod:`app.layout.scripts`);
3. lines that run across a column gutter are cut there (:mod:`app.layout.gutters`);
4. lines are grouped into paragraphs in reading order (:mod:`app.layout.reading_order`): ordered by an
   XY-cut, or kept in the engine's order where the engine analyses the layout itself (Tesseract) and no
   line had to be cut at a gutter (then its order ran two columns together), the tables put where their
   first line was;
5. the page's Markdown and text are written from the blocks (:mod:`app.layout.render`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image

from app.layout.cells import Reader, read_tables
from app.layout.gutters import split_at_gutters
from app.layout.lexicon import Lexicon
from app.layout.reading_order import arrange, text_height
from app.layout.render import blocks_markdown
from app.layout.scripts import fix_lookalikes
from app.layout.tables import find_tables
from app.schemas import Block

if TYPE_CHECKING:
    from app.engines.base import EnginePage

log = logging.getLogger(__name__)


def lay_out(
    image: Image.Image,
    page: EnginePage,
    read: Reader,
    languages: Sequence[str],
    *,
    keep_order: bool,
    lexicon: Lexicon | None = None,
    tables: bool = True,
) -> EnginePage:
    """``page`` (text-line blocks of ``image``) with its blocks grouped, ordered, tables as cells, Markdown set.

    ``read`` reads images with the page's engine and languages (the table cells); ``keep_order``: the
    engine's line order is a reading order already; ``lexicon``: the word lists that decide a word's script
    (``None``: words stay as read). Returns a new page; ``rotation`` and images are kept.
    """
    from app.engines.base import EnginePage

    lines = [block for block in page.blocks if block.text.strip()]
    found: list[Block] = []
    if tables:
        grids = find_tables(image)
        if grids:
            found = read_tables(grids, read)
            log.debug("%d table(s) found on the page", len(found))
    lines = fix_lookalikes(lines, languages, lexicon)
    outside = [line for line in lines if _table_of(line, found) is None]
    outside, cut = split_at_gutters(image, outside, read, text_height(outside))
    if keep_order and not cut:
        blocks = arrange(_insert_tables(lines, found), keep_order=True)
    else:  # no order of the engine's, or one that ran lines of two columns together
        blocks = arrange(outside + found)
    markdown, _ = blocks_markdown(blocks)
    return EnginePage(blocks=blocks, markdown=markdown, images=page.images, rotation=page.rotation)


def _table_of(line: Block, tables: Sequence[Block]) -> Block | None:
    """The table at least half of ``line``'s box lies in, if any."""
    x0, y0, x1, y1 = line.bbox
    area = max(1.0, (x1 - x0) * (y1 - y0))
    for table in tables:
        tx0, ty0, tx1, ty1 = table.bbox
        inside = max(0.0, min(x1, tx1) - max(x0, tx0)) * max(0.0, min(y1, ty1) - max(y0, ty0))
        if inside >= 0.5 * area:
            return table
    return None


def _insert_tables(lines: Sequence[Block], tables: Sequence[Block]) -> list[Block]:
    """Lines in their order with each table in place of its lines (where its first line was); a table
    that no line lay in goes before the first line below its top."""
    out: list[Block] = []
    placed: set[int] = set()
    for line in lines:
        table = _table_of(line, tables)
        if table is None:
            out.append(line)
        elif id(table) not in placed:
            placed.add(id(table))
            out.append(table)
    for table in tables:
        if id(table) in placed:
            continue
        below = next((i for i, b in enumerate(out) if b.bbox[1] > table.bbox[1]), len(out))
        out.insert(below, table)
    return out
