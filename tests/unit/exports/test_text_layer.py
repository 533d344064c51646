"""Where the text layer puts each word or line (pure geometry) and the structure Word gets (headings, lists)."""

from __future__ import annotations

from app.exports.structure import Heading, Paragraph, TableElement, page_elements, section_level
from app.exports.text_layer import block_text_lines, page_text_lines, spread_text, word_lines
from app.schemas import Block, PageResult, Table, TableCell, TextLine, Word


def word(text: str, x0: float, y0: float, x1: float, y1: float) -> Word:
    return Word(text=text, bbox=[x0, y0, x1, y1], score=0.9)


def page(blocks: list[Block], error: str | None = None) -> PageResult:
    return PageResult(index=1, width=1000, height=1000, blocks=blocks, markdown="", text="", error=error)


def test_words_keep_their_own_extents_and_share_a_line_band() -> None:
    words = [word("Hello", 10, 12, 60, 30), word("a", 70, 18, 80, 30), word("next", 10, 50, 50, 70)]
    lines = word_lines(words)
    assert [line.text for line in lines] == ["Hello a", "next"]
    assert (lines[0].top, lines[0].bottom) == (12, 30)
    assert [(w.x0, w.x1) for w in lines[0].words] == [(10, 60), (70, 80)]


def test_words_go_to_the_block_lines_they_overlap() -> None:
    lines = [
        TextLine(text="one two", bbox=[0, 0, 100, 20]),
        TextLine(text="three", bbox=[0, 30, 100, 50]),
        TextLine(text="no words", bbox=[0, 60, 100, 80]),
    ]
    words = [word("three", 0, 32, 40, 48), word("one", 0, 2, 30, 18), word("two", 40, 2, 80, 18)]
    placed = word_lines(words, lines)
    assert [line.text for line in placed] == ["one two", "three", "no words"]
    assert placed[2].words[0].x1 == 100  # a line without words spans its box


def test_a_box_with_text_only_is_spread_over_as_many_lines_as_it_holds() -> None:
    text = "Revenue grew strongly this quarter and the outlook for the next one is better still, as expected."
    lines = spread_text(text, [100, 100, 700, 160])  # about three lines of ~20 px at this width
    assert 2 <= len(lines) <= 4
    assert " ".join(line.text for line in lines) == text
    assert all(100 <= line.top < line.bottom <= 160 for line in lines)
    assert lines[0].words[0].x0 == 100 and lines[0].words[0].x1 == 700
    single = spread_text("Title", [0, 0, 100, 400])  # a tall box: no giant font
    assert len(single) == 1 and single[0].bottom - single[0].top < 60


def test_tables_place_cells_in_their_share_of_the_box() -> None:
    table = Table(
        rows=2,
        cols=2,
        cells=[
            TableCell(row=0, col=0, col_span=2, text="Head"),
            TableCell(row=1, col=0, text="a"),
            TableCell(row=1, col=1, text="b"),
        ],
    )
    lines = block_text_lines(Block(bbox=[0, 0, 200, 100], text="", label="table", table=table))
    assert [line.text for line in lines] == ["Head", "a", "b"]
    assert lines[0].words[0].x0 < 100 < lines[0].words[0].x1  # spans both columns
    assert lines[2].words[0].x0 >= 100 and lines[2].top >= 50


def test_vl_html_table_block_and_pictures() -> None:
    html = "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Apple</td><td>3</td></tr></table>"
    blocks = [
        Block(bbox=[0, 0, 400, 100], text=html, label="table", order=0),
        Block(bbox=[0, 200, 400, 400], text="", label="image", order=1),
        Block(bbox=[0, 500, 400, 540], text=" $$ E = mc^2 $$ ", label="display_formula", order=2),
    ]
    assert [line.text for line in page_text_lines(page(blocks))] == ["Name", "Qty", "Apple", "3", "E = mc^2"]
    assert page_text_lines(page(blocks, error="page timeout")) == []


def test_line_engine_pages_become_paragraphs_headings_and_lists() -> None:
    def line(text: str, top: float, height: float = 20, order: int = 0) -> Block:
        return Block(bbox=[100, top, 100 + 12 * len(text), top + height], text=text, order=order)

    blocks = [
        line("Annual report", 50, 40, 0),
        line("The first line of a paragraph", 120, order=1),
        line("goes on here.", 145, order=2),
        line("A second paragraph.", 200, order=3),
        line("- milk", 240, order=4),
        line("- bread", 265, order=5),
        line("1. First step", 300, order=6),
    ]
    elements = page_elements(page(blocks), "tesseract")
    assert elements == [
        Heading("Annual report", 1),
        Paragraph("The first line of a paragraph goes on here."),
        Paragraph("A second paragraph."),
        Paragraph("milk", "bullet"),
        Paragraph("bread", "bullet"),
        Paragraph("1. First step", "numbered"),
    ]


def test_layout_blocks_by_label() -> None:
    blocks = [
        Block(bbox=[0, 0, 10, 10], text="Report", label="doc_title", order=0),
        Block(bbox=[0, 0, 10, 10], text="2.1 Details", label="paragraph_title", order=1),
        Block(bbox=[0, 0, 10, 10], text="Page header", label="header", order=2),
        Block(bbox=[0, 0, 10, 10], text="• one\n• two", label="text", order=3),
        Block(bbox=[0, 0, 10, 10], text="<table><tr><td>x</td></tr></table>", label="table", order=4),
        Block(bbox=[0, 0, 10, 10], text="Table 1: totals", label="table_title", order=5),
    ]
    elements = page_elements(page(blocks), "paddleocr-vl")
    assert elements[:4] == [
        Heading("Report", 1),
        Heading("2.1 Details", 3),
        Paragraph("one", "bullet"),
        Paragraph("two", "bullet"),
    ]
    assert isinstance(elements[4], TableElement) and elements[4].table.cells[0].text == "x"
    assert elements[5] == Paragraph("Table 1: totals", "caption")
    assert section_level("Summary") == 2 and section_level("1.2.3.4.5 Deep") == 4


def test_the_next_column_starts_a_paragraph() -> None:
    left = [Block(bbox=[100, 100 + 30 * i, 400, 120 + 30 * i], text=f"left {i}", order=i) for i in range(3)]
    right = [Block(bbox=[500, 100 + 30 * i, 800, 120 + 30 * i], text=f"right {i}", order=3 + i) for i in range(3)]
    elements = page_elements(page(left + right), "tesseract")
    assert elements == [Paragraph("left 0 left 1 left 2"), Paragraph("right 0 right 1 right 2")]
