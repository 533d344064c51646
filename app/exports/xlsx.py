"""The Excel workbook (openpyxl): one sheet per table of the result, in page order, merged cells merged.

Whole numbers and decimals with a point become numbers (leading zeros, thousands separators and decimal commas stay
text: ``007``, ``1 234``, ``1,5`` are not guessed at); everything else is text. A result without a table has no
workbook: :class:`NoTables` (the API answers 422 ``no_tables``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from app.exports.text_layer import block_table
from app.schemas import DocumentResult, Table
from app.storage.local import atomic_write

_INTEGER = re.compile(r"^-?(0|[1-9]\d{0,14})$")
_DECIMAL = re.compile(r"^-?(0|[1-9]\d{0,14})\.\d{1,10}$")


class NoTables(Exception):
    """The result holds no table."""


def result_tables(result: DocumentResult) -> list[tuple[int, Table]]:
    """(page number, table) of every table in the result, in reading order."""
    found = []
    for page in result.pages:
        for block in sorted(page.blocks, key=lambda b: b.order):
            table = block_table(block)
            if table is not None and table.rows and table.cols:
                found.append((page.index, table))
    return found


def write_xlsx(result: DocumentResult, target: Path) -> None:
    """Write the result's tables to ``target`` (atomically); :class:`NoTables` when it has none."""
    from openpyxl import Workbook

    tables = result_tables(result)
    if not tables:
        raise NoTables(f"the result of job {result.id} has no tables")
    workbook = Workbook()
    workbook.remove(workbook.active)
    counts: dict[int, int] = {}
    for page, table in tables:
        counts[page] = counts.get(page, 0) + 1
        _fill(workbook.create_sheet(f"Page {page} table {counts[page]}"), table)
    workbook.properties.title = result.filename or f"Document {result.id}"
    workbook.properties.creator = "paddleocr-vl-service"
    buffer = io.BytesIO()
    workbook.save(buffer)
    atomic_write(target, buffer.getvalue())


def cell_value(text: str) -> str | int | float:
    """A number for plain whole numbers and point decimals, else the text."""
    stripped = text.strip()
    if _INTEGER.match(stripped):
        return int(stripped)
    if _DECIMAL.match(stripped):
        return float(stripped)
    return text


def _fill(sheet: Any, table: Table) -> None:
    from openpyxl.styles import Alignment
    from openpyxl.utils import get_column_letter

    widths = [8.0] * table.cols
    for cell in table.cells:
        if cell.row >= table.rows or cell.col >= table.cols:
            continue
        target = sheet.cell(row=cell.row + 1, column=cell.col + 1, value=cell_value(cell.text) if cell.text else None)
        if "\n" in cell.text:
            target.alignment = Alignment(wrap_text=True, vertical="top")
        last_row = min(table.rows, cell.row + cell.row_span)
        last_col = min(table.cols, cell.col + cell.col_span)
        if (last_row, last_col) != (cell.row + 1, cell.col + 1):
            sheet.merge_cells(start_row=cell.row + 1, start_column=cell.col + 1, end_row=last_row, end_column=last_col)
        if cell.col_span == 1:
            longest = max((len(line) for line in cell.text.split("\n")), default=0)
            widths[cell.col] = max(widths[cell.col], min(60.0, longest * 1.1 + 2))
    for index, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = width
