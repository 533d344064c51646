"""HTML tables (as PaddleOCR-VL writes them) -> :class:`~app.schemas.Table`: rows, columns and cells, merged cells kept.

Pure functions on text, built on the standard library's tolerant HTML tokenizer: unclosed ``<td>``/``<tr>`` and
stray tags are accepted, as browsers accept them. A cell with ``rowspan``/``colspan`` takes the first free column
of its row and occupies the grid positions it spans, so later cells of the rows below move right of it (the
HTML table model). A table nested in a cell contributes its text to that cell.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from app.schemas import Table, TableCell

MAX_SPAN = 100
"""A ``rowspan``/``colspan`` beyond this is taken as this (a hostile ``colspan=1e9`` builds no huge grid)."""
MAX_GRID = 250_000
"""Grid positions a table may occupy; spans past it count as 1."""

_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t\r\f\v]+")


@dataclass
class _Cell:
    rowspan: int
    colspan: int
    parts: list[str] = field(default_factory=list)


@dataclass
class _Grid:
    rows: list[list[_Cell]] = field(default_factory=list)


class _TableParser(HTMLParser):
    """Collects the top-level tables of a document as rows of raw cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[_Grid] = []
        self._depth = 0  # <table> nesting
        self._cell: _Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._depth += 1
            if self._depth == 1:
                self.tables.append(_Grid())
                self._cell = None
            return
        if self._depth != 1:
            if tag == "br" and self._cell is not None:
                self._cell.parts.append("\n")
            elif tag in ("td", "th", "tr") and self._cell is not None:
                self._cell.parts.append(" ")  # a nested table's cells stay apart in the outer cell's text
            return
        grid = self.tables[-1]
        if tag == "tr":
            grid.rows.append([])
            self._cell = None
        elif tag in ("td", "th"):
            if not grid.rows:
                grid.rows.append([])
            values = dict(attrs)
            self._cell = _Cell(_span(values.get("rowspan")), _span(values.get("colspan")))
            grid.rows[-1].append(self._cell)
        elif tag == "br" and self._cell is not None:
            self._cell.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and self._cell is not None:
            self._cell.parts.append("\n")
        elif tag != "table":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._depth = max(0, self._depth - 1)
            if self._depth == 0:
                self._cell = None
        elif self._depth == 1 and tag in ("td", "th", "tr"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self._depth >= 1:
            self._cell.parts.append(data)


def _span(value: str | None) -> int:
    try:
        number = int(str(value).strip()) if value is not None else 1
    except ValueError:
        return 1
    return min(MAX_SPAN, max(1, number))


def _cell_text(parts: list[str]) -> str:
    lines = "".join(parts).split("\n")
    return "\n".join(text for text in (_SPACES.sub(" ", line).strip() for line in lines) if text)


def _layout(grid: _Grid) -> Table:
    """Place the raw cells on the grid: each cell at the first free column of its row."""
    taken: set[tuple[int, int]] = set()
    cells: list[TableCell] = []
    height = len(grid.rows)
    width = 0
    for row_index, row in enumerate(grid.rows):
        column = 0
        for raw in row:
            while (row_index, column) in taken:
                column += 1
            rowspan = min(raw.rowspan, height - row_index)  # a span past the last row ends there
            colspan = raw.colspan
            if len(taken) + rowspan * colspan > MAX_GRID:
                rowspan = colspan = 1
            for r in range(row_index, row_index + rowspan):
                for c in range(column, column + colspan):
                    taken.add((r, c))
            cells.append(
                TableCell(row=row_index, col=column, row_span=rowspan, col_span=colspan, text=_cell_text(raw.parts))
            )
            column += colspan
            width = max(width, column)
    cells.sort(key=lambda c: (c.row, c.col))
    return Table(rows=height, cols=width, cells=cells)


def parse_html_tables(text: str) -> list[Table]:
    """Every top-level ``<table>`` in ``text``, in order (an empty list when there is none).

    Rows without cells are kept (they count in ``rows``); a table without any cell is left out.
    """
    if "<table" not in text.lower():
        return []
    parser = _TableParser()
    parser.feed(text)
    parser.close()
    return [table for table in (_layout(grid) for grid in parser.tables) if table.cells]


def parse_html_table(text: str) -> Table | None:
    """The first table in ``text``, or None."""
    tables = parse_html_tables(text)
    return tables[0] if tables else None


def strip_tags(text: str) -> str:
    """Text without HTML tags (cells and rows become spaces and line breaks), for plain-text uses of a block."""
    if "<" not in text:
        return text
    spaced = re.sub(r"(?i)</t[dh]>", " ", text)
    spaced = re.sub(r"(?i)<br\s*/?>|</tr>|</p>|</div>", "\n", spaced)
    plain = html.unescape(_TAG.sub("", spaced))
    return "\n".join(line for line in (_SPACES.sub(" ", part).strip() for part in plain.split("\n")) if line)


def table_rows(table: Table) -> list[list[str]]:
    """The table as a plain grid of texts (a merged cell's text in its first position, the rest empty)."""
    grid = [["" for _ in range(table.cols)] for _ in range(table.rows)]
    for cell in table.cells:
        if cell.row < table.rows and cell.col < table.cols:
            grid[cell.row][cell.col] = cell.text
    return grid
