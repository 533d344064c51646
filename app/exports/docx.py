"""The Word document (python-docx): each page's headings, paragraphs, list items, captions and tables
(:mod:`app.exports.structure`), a page break between pages. Tables are real Word tables, merged cells merged.
A page that failed OCR is one italic line saying so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from app.exports.structure import Heading, Paragraph, TableElement, page_elements
from app.schemas import DocumentResult, Table
from app.storage.local import atomic_write

log = logging.getLogger(__name__)

_STYLES = {"bullet": "List Bullet", "numbered": "List Number", "caption": "Caption"}


def write_docx(result: DocumentResult, target: Path) -> None:
    """Write ``result`` as a .docx to ``target`` (atomically)."""
    import io

    from docx import Document

    document: Any = Document()
    document.core_properties.title = result.filename or f"Document {result.id}"
    document.core_properties.comments = f"Recognised by paddleocr-vl-service ({result.engine}), job {result.id}"
    numbered = _numbered_style(document)
    for position, page in enumerate(result.pages):
        if position:
            document.add_page_break()
        if page.error is not None:
            document.add_paragraph().add_run(f"Page {page.index} could not be recognised: {page.error}").italic = True
            continue
        for element in page_elements(page, result.engine):
            if isinstance(element, Heading):
                document.add_heading(element.text, level=element.level)
            elif isinstance(element, TableElement):
                _add_table(document, element.table)
            elif isinstance(element, Paragraph):
                _add_paragraph(document, element, numbered)
    buffer = io.BytesIO()
    document.save(buffer)
    atomic_write(target, buffer.getvalue())


def _numbered_style(document: Any) -> str:
    """Numbered items keep their own number in the text: an indented list paragraph, not Word's numbering (which
    would number them again, and on across separate lists)."""
    return "List Paragraph" if "List Paragraph" in [s.name for s in document.styles] else "Normal"


def _add_paragraph(document: Any, element: Paragraph, numbered: str) -> None:
    style = numbered if element.style == "numbered" else _STYLES.get(element.style)
    paragraph = document.add_paragraph(style=style)
    run = paragraph.add_run(element.text)
    if element.style == "formula":
        run.italic = True
    elif element.style == "note":
        from docx.shared import Pt

        run.font.size = Pt(8)


def _add_table(document: Any, table: Table) -> None:
    if table.rows <= 0 or table.cols <= 0:
        return
    word_table = document.add_table(rows=table.rows, cols=table.cols)
    word_table.style = "Table Grid"
    cells = word_table._cells  # the grid, row by row (python-docx's own flat list: no per-cell lookups)
    for cell in table.cells:
        if cell.row >= table.rows or cell.col >= table.cols:
            continue
        target = cells[cell.row * table.cols + cell.col]
        last_row = min(table.rows, cell.row + cell.row_span) - 1
        last_col = min(table.cols, cell.col + cell.col_span) - 1
        if (last_row, last_col) != (cell.row, cell.col):
            try:
                target = target.merge(cells[last_row * table.cols + last_col])
            except Exception as exc:  # overlapping spans in a malformed table: the cell stays unmerged
                log.debug("table cell (%d, %d) not merged: %s", cell.row, cell.col, exc)
        target.text = cell.text
