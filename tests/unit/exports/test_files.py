"""The PDF, Word and Excel writers on results made here: generated pages with known words, and the VL engine's
canned pipeline result (tests/fixtures/paddleocr_vl). Read back with poppler, qpdf, python-docx and openpyxl."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import docx
import openpyxl
import pikepdf
import pytest
from PIL import Image, ImageDraw

from app.documents import Limits
from app.engines.paddleocr_vl.mapping import page_from_vl_result
from app.exports.docx import write_docx
from app.exports.pdf import write_searchable_pdf
from app.exports.xlsx import NoTables, cell_value, write_xlsx
from app.results import build_page
from app.schemas import Block, DocumentResult, PageResult, Timings, Word
from tests.support.documents import font, image_bytes, pdf_bytes
from tests.support.pdf_tools import check_word_positions, page_count, pdf_text, pdf_words, qpdf_check, shown_sizes

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "paddleocr_vl"
LIMITS = Limits(max_pages=1000, max_image_pixels=100_000_000)
LINES = ["Invoice 2024-117 for the northern warehouse", "Счёт оплачен полностью 15 марта"]


def drawn_page(lines: list[str], size: tuple[int, int] = (1240, 1754)) -> tuple[Image.Image, list[Block]]:
    """A page with ``lines`` drawn on it, and its blocks with the true box of every word."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    face = font(30)
    blocks = []
    for row, line in enumerate(lines):
        x, y = 100, 150 + 70 * row
        words = []
        for text in line.split():
            left, top, right, bottom = draw.textbbox((x, y), text, font=face)
            draw.text((x, y), text, font=face, fill="black")
            words.append(Word(text=text, bbox=[left, top, right, bottom], score=0.95))
            x = right + draw.textlength(" ", font=face)
        box = [
            min(w.bbox[0] for w in words),
            min(w.bbox[1] for w in words),
            words[-1].bbox[2],
            max(w.bbox[3] for w in words),
        ]
        blocks.append(Block(bbox=box, text=line, score=0.95, order=row, words=words))
    return image, blocks


def result_of(pages: list[PageResult], engine: str = "tesseract") -> DocumentResult:
    return DocumentResult(
        id="0" * 32,
        filename="doc.pdf",
        content_type="application/pdf",
        engine=engine,
        page_count=len(pages),
        pages=pages,
        markdown="",
        text="\n\f\n".join(p.text for p in pages),
        timings=Timings(decode_ms=0, ocr_ms=0, total_ms=0),
    )


def page_result(index: int, image: Image.Image, blocks: list[Block], rotation: int = 0) -> PageResult:
    width, height = image.size
    return PageResult(
        index=index,
        width=width,
        height=height,
        rotation=rotation,
        blocks=blocks,
        markdown="",
        text="\n".join(b.text for b in blocks),
    )


def check_pdf(path: Path, result: DocumentResult) -> None:
    assert page_count(path) == len(result.pages)
    check = qpdf_check(path)
    assert check.returncode == 0 and "WARNING" not in check.stdout + check.stderr
    pages = [p.model_dump() for p in result.pages]
    for page, found, size in zip(pages, pdf_words(path), shown_sizes(path), strict=True):
        assert check_word_positions(page, found, size) == []


def test_failed_page_keeps_its_place_without_text(tmp_path: Path) -> None:
    image, blocks = drawn_page(LINES)
    source = tmp_path / "scan.pdf"
    source.write_bytes(pdf_bytes([image, image]))
    failed = PageResult(index=2, width=0, height=0, blocks=[], markdown="", text="", error="page timeout")
    result = result_of([page_result(1, image, blocks), failed])
    target = tmp_path / "out.pdf"
    write_searchable_pdf(result, source, "application/pdf", target, dpi=150, limits=LIMITS)
    check_pdf(target, result)
    first, second = pdf_text(target).split("\f")[:2]
    assert "Счёт оплачен полностью" in first and "northern" in first
    assert second.strip() == ""


def test_selected_pages_only_in_document_order(tmp_path: Path) -> None:
    pages = [drawn_page([f"Page number {n}"]) for n in (1, 2, 3)]
    source = tmp_path / "three.pdf"
    source.write_bytes(pdf_bytes([image for image, _ in pages]))
    result = result_of([page_result(n, *pages[n - 1]) for n in (1, 3)])
    target = tmp_path / "out.pdf"
    write_searchable_pdf(result, source, "application/pdf", target, dpi=150, limits=LIMITS)
    assert [t.strip() for t in pdf_text(target).split("\f")[:2]] == ["Page number 1", "Page number 3"]


def test_image_turned_upright_by_the_service(tmp_path: Path) -> None:
    """The engine read the image turned 90 degrees clockwise: the page gets /Rotate 90 and the words stand where
    the upright boxes put them."""
    upright, blocks = drawn_page(LINES, size=(1754, 1240))
    source = tmp_path / "sideways.png"
    source.write_bytes(image_bytes(upright.rotate(90, expand=True), "PNG"))  # as scanned: lying on its side
    result = result_of([page_result(1, upright, blocks, rotation=90)])
    target = tmp_path / "out.pdf"
    write_searchable_pdf(result, source, "image/png", target, dpi=150, limits=LIMITS)
    with pikepdf.open(target) as pdf:
        assert int(pdf.pages[0].obj.Rotate) == 90
    check_pdf(target, result)


def test_mirrored_exif_image_is_rasterised_as_the_engine_saw_it(tmp_path: Path) -> None:
    upright, blocks = drawn_page(LINES, size=(1000, 800))
    exif = Image.Exif()
    exif[0x0112] = 2  # mirrored left to right
    source = tmp_path / "mirrored.jpg"
    source.write_bytes(image_bytes(upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG", exif=exif))
    result = result_of([page_result(1, upright, blocks)])
    target = tmp_path / "out.pdf"
    write_searchable_pdf(result, source, "image/jpeg", target, dpi=150, limits=LIMITS)
    check_pdf(target, result)


def vl_result() -> DocumentResult:
    res = json.loads((FIXTURES / "layout_on.result.json").read_text())["res"]
    markdown = json.loads((FIXTURES / "layout_on.markdown.json").read_text())
    engine_page = page_from_vl_result(res, {"markdown_texts": markdown["markdown_texts"], "markdown_images": {}})
    page = build_page(1, res["width"], res["height"], engine_page.blocks, engine_page.markdown)
    return result_of([page], engine="paddleocr-vl")


def test_vl_blocks_without_words_are_searchable_inside_their_boxes(tmp_path: Path) -> None:
    result = vl_result()
    page = result.pages[0]
    source = tmp_path / "page.png"
    source.write_bytes(image_bytes(Image.new("RGB", (page.width, page.height), "white"), "PNG"))
    target = tmp_path / "vl.pdf"
    write_searchable_pdf(result, source, "image/png", target, dpi=150, limits=LIMITS)
    text = " ".join(pdf_text(target).split())
    for expected in ("Quarterly Report", "1. Summary", "Revenue grew strongly this quarter.", "Apple", "E = mc^2"):
        assert expected in text
    (width, _), found = shown_sizes(target)[0], pdf_words(target)[0]
    scale = width / page.width
    boxes = {b.label: [v * scale for v in b.bbox] for b in page.blocks}
    for words, label in (("Quarterly Report", "doc_title"), ("Name Qty Apple 3", "table")):
        for token in words.split():
            box = next(w.box for w in found if w.text == token)
            x0, y0, x1, y1 = boxes[label]
            assert x0 - 1 <= box[0] and box[2] <= x1 + 1 and y0 - 1 <= box[1] and box[3] <= y1 + 1, (token, box)


def test_vl_word_and_excel_files_hold_the_structure_and_the_table(tmp_path: Path) -> None:
    result = vl_result()
    write_docx(result, tmp_path / "vl.docx")
    document = docx.Document(str(tmp_path / "vl.docx"))
    paragraphs = [(p.style.name, p.text) for p in document.paragraphs if p.text]
    assert paragraphs[:3] == [
        ("Heading 1", "Quarterly Report"),
        ("Heading 2", "1. Summary"),
        ("Normal", "Revenue grew strongly this quarter."),
    ]
    assert ("Caption", "Figure 1: Blue box") in paragraphs
    assert [[c.text for c in row.cells] for row in document.tables[0].rows] == [["Name", "Qty"], ["Apple", "3"]]
    write_xlsx(result, tmp_path / "vl.xlsx")
    sheet = openpyxl.load_workbook(tmp_path / "vl.xlsx").active
    assert sheet.title == "Page 1 table 1"
    assert [[c.value for c in row] for row in sheet.iter_rows()] == [["Name", "Qty"], ["Apple", 3]]


def merged_table_result() -> DocumentResult:
    html = (
        "<table><tr><td rowspan=2>Region</td><td colspan=2>Sales</td></tr><tr><td>Q1</td><td>Q2</td></tr>"
        "<tr><td>North</td><td>1200</td><td>007</td></tr></table>"
    )
    blocks = [
        Block(bbox=[0, 0, 500, 300], text=html, label="table", order=0),
        Block(bbox=[0, 400, 500, 700], text="<table><tr><td>only</td></tr></table>", label="table", order=1),
    ]
    page = PageResult(index=2, width=1000, height=1000, blocks=blocks, markdown="", text="")
    return result_of([page], engine="paddleocr-vl")


def test_merged_cells_are_merged_in_word_and_excel(tmp_path: Path) -> None:
    result = merged_table_result()
    write_xlsx(result, tmp_path / "t.xlsx")
    book = openpyxl.load_workbook(tmp_path / "t.xlsx")
    assert book.sheetnames == ["Page 2 table 1", "Page 2 table 2"]
    sheet = book["Page 2 table 1"]
    assert sorted(str(r) for r in sheet.merged_cells.ranges) == ["A1:A2", "B1:C1"]
    assert [sheet["A3"].value, sheet["B3"].value, sheet["C3"].value] == ["North", 1200, "007"]
    write_docx(result, tmp_path / "t.docx")
    table = docx.Document(str(tmp_path / "t.docx")).tables[0]
    assert table.cell(0, 0)._tc is table.cell(1, 0)._tc and table.cell(0, 1)._tc is table.cell(0, 2)._tc
    assert [c.text for c in table.rows[2].cells] == ["North", "1200", "007"]


def test_no_tables_no_workbook(tmp_path: Path) -> None:
    image, blocks = drawn_page(LINES)
    with pytest.raises(NoTables):
        write_xlsx(result_of([page_result(1, image, blocks)]), tmp_path / "none.xlsx")
    assert not (tmp_path / "none.xlsx").exists()


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", 12), ("-3.50", 3.5 * -1), ("0", 0), ("007", "007"), ("1 234", "1 234"), ("1,5", "1,5"), ("x1", "x1")],
)
def test_cell_values(text: str, value: Any) -> None:
    assert cell_value(text) == value


def test_word_document_of_lines_and_a_failed_page(tmp_path: Path) -> None:
    image, blocks = drawn_page(LINES)
    failed = PageResult(index=2, width=0, height=0, blocks=[], markdown="", text="", error="page timeout")
    write_docx(result_of([page_result(1, image, blocks), failed]), tmp_path / "d.docx")
    document = docx.Document(str(tmp_path / "d.docx"))
    texts = [p.text for p in document.paragraphs if p.text]
    assert texts[0] == " ".join(LINES) or texts[:2] == LINES
    assert "Page 2 could not be recognised: page timeout" in texts
    assert document.element.body.xml.count('w:type="page"') == 1
    assert io.BytesIO((tmp_path / "d.docx").read_bytes()).read(2) == b"PK"


def test_text_beyond_dejavu_is_extractable_through_the_fallback_font(tmp_path: Path) -> None:
    """Chinese (PP-OCR reads it) has no glyphs in DejaVu Sans: Droid Sans Fallback carries it, with ToUnicode."""
    image, blocks = drawn_page(["Total 合计 128 元", "Привет 你好"])
    source = tmp_path / "page.png"
    source.write_bytes(image_bytes(image, "PNG"))
    result = result_of([page_result(1, image, blocks)], engine="pp-ocr")
    target = tmp_path / "cjk.pdf"
    write_searchable_pdf(result, source, "image/png", target, dpi=150, limits=LIMITS)
    text = pdf_text(target)
    assert "合计" in text and "你好" in text and "Привет" in text
    check_pdf(target, result)


def test_pdf_page_with_its_own_rotate_turned_further_by_the_service(tmp_path: Path) -> None:
    """A page stored upside down and shown with /Rotate 90 (so it lies on its side), which the service turned 90
    degrees more: /Rotate 180 shows it upright, with the words where the upright boxes put them."""
    upright, blocks = drawn_page(LINES, size=(1240, 1754))
    stored = tmp_path / "stored.pdf"
    stored.write_bytes(pdf_bytes([upright.rotate(180)]))
    with pikepdf.open(stored) as pdf:
        pdf.pages[0].obj.Rotate = 90
        pdf.save(tmp_path / "sideways.pdf")
    result = result_of([page_result(1, upright, blocks, rotation=90)])
    target = tmp_path / "out.pdf"
    write_searchable_pdf(result, tmp_path / "sideways.pdf", "application/pdf", target, dpi=150, limits=LIMITS)
    with pikepdf.open(target) as pdf:
        assert int(pdf.pages[0].obj.Rotate) == 180
    check_pdf(target, result)
