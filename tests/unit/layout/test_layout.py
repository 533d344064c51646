"""Page layout without an engine: reading order of line boxes, Markdown of blocks and tables, ruled tables found
on generated images, the Tesseract word lists and words put back into their script."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from app.engines.tesseract import find_tessdata
from app.layout import gutters
from app.layout.gutters import split_at_gutters
from app.layout.lexicon import Lexicon, WordGraph
from app.layout.reading_order import arrange, xy_order
from app.layout.render import blocks_markdown, table_markdown, table_text
from app.layout.scripts import fix_lookalikes
from app.layout.tables import find_tables
from app.schemas import Block, Table, TableCell, Word
from tests.support.documents import blurred, font, jpeg_artefacts, photographed, rotated
from tests.support.layout_pages import invoice_rows, table_page


def line(x0: float, y0: float, x1: float, y1: float, text: str, words: list[Word] | None = None) -> Block:
    return Block(bbox=[x0, y0, x1, y1], text=text, score=0.9, words=words)


def column(x0: float, x1: float, top: float, name: str, count: int, step: float = 40) -> list[Block]:
    return [line(x0, top + i * step, x1, top + i * step + 28, f"{name}{i}") for i in range(count)]


def texts(blocks: list[Block]) -> list[str]:
    return [b.text for b in blocks]


@pytest.mark.parametrize("gutter", [24, 60, 200])
def test_two_columns_between_a_title_and_a_footer(gutter: int) -> None:
    """Left column, then right; the full-width title and footer stay where they are (lines given shuffled)."""
    width = (1000 - gutter) / 2
    title = line(100, 50, 1100, 90, "title")
    left = column(100, 100 + width, 130, "L", 6)
    right = column(100 + width + gutter, 1100, 130, "R", 5)
    footer = line(100, 400, 1100, 428, "footer")
    shuffled = [right[2], footer, left[4], title, *right[:2], *right[3:][::-1], *left[:4], left[5]]
    assert texts(xy_order(shuffled, 28)) == ["title", *texts(left), *texts(right), "footer"]


def test_three_columns_and_a_section_in_two() -> None:
    cols3 = [column(100 + i * 340, 400 + i * 340, 100, "ABC"[i], 4) for i in range(3)]
    middle = line(100, 300, 1080, 328, "middle")
    cols2 = [column(100 + i * 500, 560 + i * 500, 360, "DE"[i], 3) for i in range(2)]
    blocks = [b for col in cols3 + cols2 for b in col] + [middle]
    expected = [b.text for col in cols3 for b in col] + ["middle"] + [b.text for col in cols2 for b in col]
    assert texts(xy_order(blocks[::-1], 28)) == expected


def test_skewed_columns_whose_lines_overlap_vertically() -> None:
    """A page fed askew: each line box is taller than the line pitch, so no horizontal cut exists."""
    left = [line(100, 100 + i * 30, 560, 150 + i * 30, f"L{i}") for i in range(6)]
    right = [line(600, 110 + i * 30, 1060, 160 + i * 30, f"R{i}") for i in range(6)]
    assert texts(xy_order(right + left, 28)) == texts(left) + texts(right)


def test_a_row_of_boxes_is_read_across() -> None:
    """Label and value on one line, and a two-line form: read row by row, not as columns."""
    form = [line(100, 100, 200, 128, "Name:"), line(600, 102, 800, 130, "John Smith")]
    assert texts(xy_order(form[::-1], 28)) == ["Name:", "John Smith"]
    narrow = [line(100, 100, 180, 128, "a1"), line(260, 100, 340, 128, "b1"), line(100, 140, 180, 168, "a2")]
    assert texts(xy_order(narrow[::-1], 28)) == ["a1", "b1", "a2"]  # columns narrower than 4 text heights


def test_paragraphs_are_blocks_with_their_lines_and_words() -> None:
    words = [Word(text="one", bbox=[100, 100, 150, 128]), Word(text="two", bbox=[160, 100, 200, 128])]
    first = [line(100, 100, 900, 128, "one two", words), line(100, 136, 700, 164, "three")]
    second = [line(100, 220, 900, 248, "four"), line(100, 256, 880, 284, "five")]
    blocks = arrange(second + first)
    assert texts(blocks) == ["one two\nthree", "four\nfive"]
    assert [b.order for b in blocks] == [0, 1]
    assert blocks[0].lines is not None and [x.text for x in blocks[0].lines] == ["one two", "three"]
    assert blocks[0].bbox == [100, 100, 900, 164]
    assert blocks[0].words == words and blocks[1].words is None
    markdown, text = blocks_markdown(blocks)
    assert markdown == "one two\nthree\n\nfour\nfive" and text == "one two\nthree\nfour\nfive"


def test_kept_order_is_only_grouped() -> None:
    right, left = line(600, 100, 1000, 128, "right"), line(100, 100, 500, 128, "left")
    assert texts(arrange([right, left], keep_order=True)) == ["right", "left"]


def test_a_heading_is_not_part_of_the_paragraph_below() -> None:
    blocks = arrange([line(100, 100, 600, 150, "Big heading"), line(100, 160, 900, 188, "body text")])
    assert texts(blocks) == ["Big heading", "body text"]


def test_tables_in_markdown_and_text() -> None:
    cells = [TableCell(row=r, col=c, text=f"{r}|{c}") for r in range(2) for c in range(2)]
    plain = Table(rows=2, cols=2, cells=cells)
    assert table_markdown(plain) == "| 0\\|0 | 0\\|1 |\n|---|---|\n| 1\\|0 | 1\\|1 |"
    assert table_text(plain) == "0|0\t0|1\n1|0\t1|1"
    merged = Table(
        rows=2,
        cols=2,
        cells=[TableCell(row=0, col=0, col_span=2, text="a<b"), TableCell(row=1, col=0), TableCell(row=1, col=1)],
    )
    assert table_markdown(merged) == '<table><tr><td colspan="2">a&lt;b</td></tr><tr><td></td><td></td></tr></table>'
    page = [Block(bbox=[0, 0, 1, 1], text="t", label="table", table=plain), line(0, 5, 9, 9, "# after")]
    markdown, text = blocks_markdown(page)
    assert markdown.endswith("\n\n\\# after") and text.endswith("1|1\n# after")


def drawn_grid(page_cells: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    return sorted(page_cells)


@pytest.mark.parametrize("noise", ["clean", "scanned", "photographed"])
def test_a_ruled_table_is_found_with_its_grid(noise: str) -> None:
    drawn = table_page(invoice_rows(5, seed=3), font_size=18, rule=1 if noise == "clean" else 2)
    image = drawn.image
    if noise == "scanned":
        image = jpeg_artefacts(rotated(blurred(image), 1.2))
    elif noise == "photographed":
        image = photographed(image, seed=2)
    [table] = find_tables(image)
    assert (table.rows, table.cols) == (6, 6)
    assert sorted((c.row, c.col, c.row_span, c.col_span) for c in table.cells) == sorted(
        (c.row, c.col, c.row_span, c.col_span) for c in drawn.tables[0]
    )


def test_merged_cells_span_rows_and_columns() -> None:
    rows: list[list[str | None]] = [
        ["Region", "2023", None, "2024"],
        [None, "Q1", "Q2", "Q1"],
        ["North", "1", "2", "3"],
    ]
    drawn = table_page(rows, spans={(0, 0): (2, 1), (0, 1): (1, 2)})
    [table] = find_tables(drawn.image)
    found = sorted((c.row, c.col, c.row_span, c.col_span) for c in table.cells)
    assert found == sorted((c.row, c.col, c.row_span, c.col_span) for c in drawn.tables[0])


def test_text_and_underlines_are_not_tables() -> None:
    from PIL import Image, ImageDraw

    from tests.support.documents import ENGLISH_LINES, render_page

    page = render_page(ENGLISH_LINES)
    ImageDraw.Draw(page).line((110, 600, 900, 600), fill="black", width=2)  # a rule under the text
    ImageDraw.Draw(page).rectangle((100, 100, 1150, 560), outline="black", width=2)  # a frame: one cell
    assert find_tables(page) == []
    assert find_tables(Image.new("RGB", (50, 40), "white")) == []


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    tessdata = find_tessdata()
    if tessdata is None or not (tessdata / "rus.traineddata").is_file():
        pytest.fail("tesseract-ocr-rus and -eng are needed (make install-system-deps)")
    return Lexicon(tessdata)


def test_word_lists_of_the_installed_models(lexicon: Lexicon, tmp_path: Path) -> None:
    assert lexicon.knows("регистратор", ("rus",)) and lexicon.knows("Папка-регистратор", ("rus",))
    assert not lexicon.knows("регистратор", ("eng",)) and lexicon.knows("PATH", ("eng",))
    assert not lexicon.knows("peructpatop", ("rus", "eng")) and not lexicon.knows("", ("rus",))
    assert lexicon.likeness("скоросшиватель", ("rus",)) > 0.8 > lexicon.likeness("скоросшиватель", ("eng",))
    assert lexicon.graph("xyz") is None  # not installed
    (tmp_path / "bad.traineddata").write_bytes(b"\x02\x00\x00\x00garbage")
    assert WordGraph.read(tmp_path / "bad.traineddata") is None
    assert Lexicon(tmp_path).graph("bad") is None


@pytest.mark.parametrize(
    "read,expected",
    [
        ("Nanka-peructpatop 75 мм", "Папка-регистратор 75 мм"),
        ("Сахар-песок, copt высший", "Сахар-песок, сорт высший"),
        ("Tpeтий ceктop", "Третий сектор"),
        ("Переменная окружения РАТН задаёт", "Переменная окружения PATH задаёт"),
        ("Пaпкa синяя", "Папка синяя"),
        ("по протоколу НТТР$ на порту", "по протоколу HTTPS на порту"),
        ("стоит US$ 5", "стоит US$ 5"),
        # as read: real Latin words, acronyms, codes, mixed text
        ("Команда cron и редактор nano", "Команда cron и редактор nano"),
        ("Сервер OCR принимает PDF и JPEG через REST API", "Сервер OCR принимает PDF и JPEG через REST API"),
        ("Формат A4, артикул TX-200, ООО «Ромашка»", "Формат A4, артикул TX-200, ООО «Ромашка»"),
        ("Meeting notes: обсудили deadline", "Meeting notes: обсудили deadline"),
        ("Windows, Linux и macOS", "Windows, Linux и macOS"),
    ],
)
def test_words_are_put_back_into_their_script(lexicon: Lexicon, read: str, expected: str) -> None:
    words = [Word(text=w, bbox=[0, 0, 1, 1]) for w in read.split()]
    [fixed] = fix_lookalikes([Block(bbox=[0, 0, 1, 1], text=read, words=words)], ("ru", "en"), lexicon)
    assert fixed.text == expected
    assert " ".join(w.text for w in fixed.words or []) == expected


def test_latin_pages_are_left_alone(lexicon: Lexicon) -> None:
    [kept] = fix_lookalikes([Block(bbox=[0, 0, 1, 1], text="Tonop")], ("en",), lexicon)
    assert kept.text == "Tonop"
    [kept] = fix_lookalikes([Block(bbox=[0, 0, 1, 1], text="Tonop copt")], ("ru",), None)
    assert kept.text == "Tonop copt"


def test_a_line_across_a_narrow_gutter_is_cut_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two columns 28 px apart; the engine gave one line across both (with its words): it is cut at the gutter and
    each piece read again (a line read across a gutter may be garbled); its words are kept where they spell the new
    reading. A wide space inside a column's line is not a gutter."""
    from tests.support.layout_pages import ENGLISH_PROSE, columns_page, prose

    page = columns_page([(2, prose(ENGLISH_PROSE, 2, seed=1))], font_size=21, gutter=28)
    lines = page.text.split("\n")
    half = len(lines) // 2
    face_width = (1240 - 2 * 90 - 28) / 2
    step = int(21 * 1.45)
    merged_words = [
        Word(text=lines[0], bbox=[90, 90, 90 + face_width - 40, 112]),
        Word(text=lines[half], bbox=[90 + face_width + 28, 90, 1150, 112]),
    ]
    merged = line(90, 90, 1150, 112, lines[0] + " " + lines[half], merged_words)
    rest = [line(90, 90 + i * step, 90 + face_width - 40, 112 + i * step, lines[i]) for i in range(1, half)]
    asked: list[int] = []

    def read_pieces(pieces: list[object], read: object) -> list[list[Block]]:  # the engine reads each piece
        asked.append(len(pieces))
        return [[Block(bbox=[0, 0, 1, 1], text=text)] for text in (lines[0], lines[half])[: len(pieces)]]

    def read(images: list[Image.Image]) -> list[list[Block]]:
        return [[] for _ in images]

    monkeypatch.setattr(gutters, "read_pieces", read_pieces)
    out, cut = split_at_gutters(page.image, [merged, *rest], read, 22)
    assert cut and asked == [2]
    assert [b.text for b in out[:2]] == [lines[0], lines[half]]
    assert [[w.text for w in b.words or []] for b in out[:2]] == [[lines[0]], [lines[half]]]  # words kept
    assert out[0].bbox[2] < 90 + face_width + 14 < out[1].bbox[0]
    wide = line(90, 90, 1150, 112, "Total:" + " " * 30 + "1 234.00")
    image = Image.new("RGB", (1240, 400), "white")
    ImageDraw.Draw(image).text((90, 90), "Total:", fill="black", font=font(21))
    ImageDraw.Draw(image).text((1000, 90), "1 234.00", fill="black", font=font(21))
    ImageDraw.Draw(image).text(
        (90, 130), "The next line runs across the whole page, under the wide gap.", font=font(21), fill="black"
    )
    kept, cut = split_at_gutters(image, [wide], read, 22)
    assert not cut and [b.text for b in kept] == [wide.text] and kept[0].bbox[2] < 1150  # fitted to its ink
