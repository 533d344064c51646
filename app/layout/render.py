"""Blocks in reading order -> page Markdown and plain text (pure).

A text block is a paragraph: its lines one per line, a blank line after it. A table is a Markdown pipe
table when every cell is one row and one column, and an HTML ``<table>`` (``rowspan``/``colspan``) when
cells are merged, since pipe tables cannot say that. In the plain text a table is a line per row, its
cells separated by tabs (what a spreadsheet pastes as columns).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from app.schemas import Block, Table, TableCell

_NUMBERED = re.compile(r"^(\d+)[.)]\s")
_MARKDOWN_CHARS = frozenset("#>+*|-")


def escape_markdown_line(line: str) -> str:
    """Keep recognised text literal: a line that starts like Markdown syntax is escaped."""
    stripped = line.lstrip()
    numbered = _NUMBERED.match(stripped)
    if numbered:  # "1. Total" would become a list item: escape the dot
        return numbered.group(1) + "\\" + stripped[len(numbered.group(1)) :]
    return "\\" + stripped if stripped[:1] in _MARKDOWN_CHARS else line


def blocks_markdown(blocks: Sequence[Block]) -> tuple[str, str]:
    """(markdown, text) of a page's blocks, in the order given."""
    parts: list[str] = []
    texts: list[str] = []
    for block in blocks:
        if block.table is not None:
            parts.append(table_markdown(block.table))
            texts.append(table_text(block.table))
            continue
        lines = [line for line in block.text.split("\n") if line.strip()]
        if lines:
            parts.append("\n".join(escape_markdown_line(line) for line in lines))
            texts.append("\n".join(lines))
    return "\n\n".join(parts), "\n".join(texts)


def table_grid(table: Table) -> list[list[TableCell | None]]:
    """The table as a rows x cols grid: each position holds the cell that starts there, else ``None``."""
    grid: list[list[TableCell | None]] = [[None] * table.cols for _ in range(table.rows)]
    for cell in table.cells:
        if 0 <= cell.row < table.rows and 0 <= cell.col < table.cols:
            grid[cell.row][cell.col] = cell
    return grid


def table_text(table: Table) -> str:
    """A line per row, the cells' texts separated by tabs (merged cells once, where they start)."""
    rows = []
    for row in table_grid(table):
        rows.append("\t".join(_one_line(cell.text) for cell in row if cell is not None))
    return "\n".join(rows)


def table_markdown(table: Table) -> str:
    """A pipe table (the first row as its header), or HTML when cells span rows or columns."""
    if table.rows == 0 or table.cols == 0:
        return ""
    if any(cell.row_span > 1 or cell.col_span > 1 for cell in table.cells):
        return table_html(table)
    grid = table_grid(table)
    lines = []
    for index, row in enumerate(grid):
        lines.append("| " + " | ".join(_pipe_cell(cell.text if cell else "") for cell in row) + " |")
        if index == 0:
            lines.append("|" + "---|" * table.cols)
    return "\n".join(lines)


def table_html(table: Table) -> str:
    """``<table>`` with a ``<tr>`` per row and ``rowspan``/``colspan`` on merged cells (text escaped)."""
    rows = []
    for row in table_grid(table):
        cells = []
        for cell in row:
            if cell is None:
                continue
            spans = (f' rowspan="{cell.row_span}"' if cell.row_span > 1 else "") + (
                f' colspan="{cell.col_span}"' if cell.col_span > 1 else ""
            )
            cells.append(f"<td{spans}>{html.escape(_one_line(cell.text))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _pipe_cell(text: str) -> str:
    return _one_line(text).replace("\\", "\\\\").replace("|", "\\|")
