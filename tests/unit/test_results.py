"""Reading order and Markdown/text building are pure functions."""

from __future__ import annotations

from app.results import build_page, join_pages, lines_markdown, reading_order
from app.schemas import Block


def block(x0: float, y0: float, x1: float, y1: float, text: str) -> Block:
    return Block(bbox=[x0, y0, x1, y1], text=text, score=0.9)


def test_reading_order_top_to_bottom_then_left_to_right() -> None:
    blocks = [
        block(600, 102, 900, 130, "right"),
        block(100, 200, 400, 230, "second line"),
        block(100, 100, 400, 128, "left"),
        block(100, 20, 800, 50, "title"),
    ]
    bands = reading_order(blocks)
    assert [[b.text for b in band] for band in bands] == [["title"], ["left", "right"], ["second line"]]
    assert [b.order for band in bands for b in band] == [0, 1, 2, 3]


def test_slightly_skewed_line_stays_one_band() -> None:
    bands = reading_order([block(500, 108, 900, 136, "b"), block(100, 100, 400, 128, "a")])
    assert [[b.text for b in band] for band in bands] == [["a", "b"]]


def test_adjacent_lines_are_not_merged() -> None:
    bands = reading_order([block(100, 100, 400, 130, "one"), block(100, 131, 400, 160, "two")])
    assert len(bands) == 2


def test_paragraphs_and_escaping() -> None:
    bands = reading_order(
        [
            block(100, 100, 400, 128, "# not a heading"),
            block(100, 135, 400, 163, "1. not a list"),
            block(100, 260, 400, 288, "new paragraph"),
        ]
    )
    markdown, text = lines_markdown(bands)
    assert markdown == "\\# not a heading\n1\\. not a list\n\nnew paragraph"
    assert text == "# not a heading\n1. not a list\nnew paragraph"


def test_empty_page() -> None:
    page = build_page(1, 100, 100, [])
    assert page.blocks == [] and page.markdown == "" and page.text == ""


def test_a_turned_page_has_the_size_it_was_read_at() -> None:
    """The engine saw a 100x40 image turned 90 or 270 degrees: the page as read is 40x100."""
    assert (build_page(1, 100, 40, [], rotation=90).width, build_page(1, 100, 40, [], rotation=90).height) == (40, 100)
    assert build_page(1, 100, 40, [], rotation=270).rotation == 270
    upside_down = build_page(1, 100, 40, [], rotation=180)
    assert (upside_down.width, upside_down.height, upside_down.rotation) == (100, 40, 180)
    assert build_page(1, 100, 40, []).rotation == 0


def test_engine_markdown_is_kept() -> None:
    blocks = [Block(bbox=[0, 0, 10, 10], text="B", order=1), Block(bbox=[0, 20, 10, 30], text="A", order=0)]
    page = build_page(2, 10, 40, blocks, markdown="## A\n\nB")
    assert page.markdown == "## A\n\nB" and page.text == "A\nB"


def test_join_pages() -> None:
    pages = [build_page(1, 10, 10, [block(0, 0, 5, 5, "a")]), build_page(2, 10, 10, [block(0, 0, 5, 5, "b")])]
    markdown, text = join_pages(pages)
    assert markdown == "a\n\n---\n\nb" and text == "a\n\f\nb"
