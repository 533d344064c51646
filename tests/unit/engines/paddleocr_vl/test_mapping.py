"""PaddleOCR-VL page results (real outputs of paddleocr 3.3.3, tests/fixtures/paddleocr_vl) -> EnginePage."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.engines.paddleocr_vl.mapping import page_from_vl_result, reading_positions, safe_image_name
from app.results import build_page, page_image_names, rewrite_image_refs

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "paddleocr_vl"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def markdown_dict(name: str) -> dict[str, Any]:
    """A ``result.markdown`` dict as the pipeline returns it: the described images become real PIL images."""
    markdown = load(name)
    images = {}
    for path, described in markdown.get("markdown_images", {}).items():
        image = Image.open(FIXTURES / path)
        assert list(image.size) == described["size"]
        images[path] = image
    markdown["markdown_images"] = images
    return markdown


def test_layout_page_blocks_keep_labels_boxes_text_and_list_order() -> None:
    page = page_from_vl_result(load("layout_on.result.json")["res"], markdown_dict("layout_on.markdown.json"))
    assert [(b.order, b.label) for b in page.blocks] == [
        (0, "doc_title"),
        (1, "paragraph_title"),
        (2, "text"),
        (3, "table"),
        (4, "image"),
        (5, "figure_title"),
        (6, "display_formula"),
        (7, "number"),
    ]
    title, _, text, table, image, caption, formula, number = page.blocks
    assert title.text == "Quarterly Report" and title.bbox == [190, 20, 610, 70]
    assert text.text == "Revenue grew strongly this quarter."
    assert table.text == "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Apple</td><td>3</td></tr></table>"
    assert image.text == "" and image.bbox == [200, 460, 600, 700]
    assert caption.text == "Figure 1: Blue box"
    assert formula.text.strip() == "$$ E = mc^2 $$"
    assert number.text == "7"
    assert all(b.score is None for b in page.blocks)


def test_layout_page_markdown_and_its_image() -> None:
    page = page_from_vl_result(load("layout_on.result.json")["res"], markdown_dict("layout_on.markdown.json"))
    name = "imgs/img_in_image_box_200_460_600_700.jpg"
    assert page.markdown == load("layout_on.markdown.json")["markdown_texts"]
    assert page.markdown is not None and page.markdown.startswith("# Quarterly Report\n\n### 1. Summary")
    assert "<table border=1" in page.markdown and "<td style='text-align: center;'>Apple</td>" in page.markdown
    assert f'<img src="{name}"' in page.markdown
    assert "\n7" not in page.markdown  # the page number is a block, not Markdown
    assert list(page.images) == [name]
    decoded = Image.open(io.BytesIO(page.images[name]))
    assert decoded.format == "JPEG" and decoded.size == (400, 240)
    # the crop is the blue box of the page
    red, _, blue = decoded.convert("RGB").getpixel((200, 120))  # type: ignore[misc]
    assert blue > 150 and red < 80


def test_plain_markdown_variant_image_reference() -> None:
    markdown = markdown_dict("layout_on.markdown.json")
    markdown["markdown_texts"] = load("layout_on.markdown_pretty_false.json")["markdown_texts"]
    page = page_from_vl_result(load("layout_on.result.json")["res"], markdown)
    assert "![](imgs/img_in_image_box_200_460_600_700.jpg)" in (page.markdown or "")


@pytest.mark.parametrize(
    ("stem", "label", "text"),
    [
        ("ocr_numpy", "ocr", "Hello stand-in"),
        ("table", "table", "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Apple</td><td>3</td></tr></table>"),
        ("formula", "formula", "$$E=mc^2$$"),
    ],
)
def test_layout_off_pages_are_one_block(stem: str, label: str, text: str) -> None:
    res = load(f"{stem}.result.json")["res"]
    page = page_from_vl_result(res, markdown_dict(f"{stem}.markdown.json"))
    assert len(page.blocks) == 1
    block = page.blocks[0]
    assert (block.label, block.text, block.order) == (label, text, 0)
    assert block.bbox == [0, 0, res["width"], res["height"]]
    assert page.images == {}
    assert page.markdown == load(f"{stem}.markdown.json")["markdown_texts"]


def test_pdf_pages() -> None:
    pages = [page_from_vl_result(item["res"], None) for item in load("pdf_3pages.results.json")]
    assert [p.blocks[0].text for p in pages] == ["Hello stand-in"] * 3
    assert all(p.markdown == "" for p in pages)


def test_result_page_text_follows_block_order() -> None:
    page = page_from_vl_result(load("layout_on.result.json")["res"], markdown_dict("layout_on.markdown.json"))
    result = build_page(1, 800, 1000, page.blocks, page.markdown)
    assert result.text.splitlines()[:3] == ["Quarterly Report", "1. Summary", "Revenue grew strongly this quarter."]
    assert result.markdown == page.markdown


def test_reading_positions() -> None:
    # the real layout page: numbered blocks ascend in list order, unnumbered ones stay where they are
    assert reading_positions([1, 2, 3, None, None, None, 4, None]) == list(range(8))
    # numbered blocks out of list order: by number; an unnumbered block follows its predecessor
    assert reading_positions([2, None, 1, 3]) == [1, 2, 0, 3]
    assert reading_positions([None, None]) == [0, 1]
    assert reading_positions([]) == []


def test_unsafe_image_names_are_renamed_and_references_follow() -> None:
    image = Image.new("RGB", (4, 4), "red")
    page = page_from_vl_result(
        {"parsing_res_list": []},
        {
            "markdown_texts": '![](../../etc/x.jpg) and <img src="/abs.png" />',
            "markdown_images": {"../../etc/x.jpg": image, "/abs.png": image},
        },
    )
    assert set(page.images) == {"imgs/image_1.jpg", "imgs/image_2.jpg"}
    assert page.markdown == '![](imgs/image_1.jpg) and <img src="imgs/image_2.jpg" />'
    assert safe_image_name("imgs/img_in_chart_box_1_2_3_4.jpg", 1) == "imgs/img_in_chart_box_1_2_3_4.jpg"
    assert safe_image_name("imgs/a.gif", 3) == "imgs/image_3.jpg"


def test_page_image_names_are_unique_per_page() -> None:
    markdown = '<img src="imgs/img_in_image_box_1_2_3_4.jpg" /> ![](imgs/img_in_image_box_1_2_3_45.jpg)'
    images = {"imgs/img_in_image_box_1_2_3_4.jpg": b"a", "imgs/img_in_image_box_1_2_3_45.jpg": b"b"}
    first = page_image_names(1, markdown, images)
    second = page_image_names(2, markdown, images)
    assert (
        first[0]
        == '<img src="imgs/page1_img_in_image_box_1_2_3_4.jpg" /> ![](imgs/page1_img_in_image_box_1_2_3_45.jpg)'
    )
    assert set(first[1]) == {"imgs/page1_img_in_image_box_1_2_3_4.jpg", "imgs/page1_img_in_image_box_1_2_3_45.jpg"}
    assert set(first[1]).isdisjoint(second[1])
    assert page_image_names(3, "text", {}) == ("text", {})


def test_rewrite_only_whole_paths() -> None:
    text = "imgs/a.jpg x/imgs/a.jpg imgs/a.jpgx (imgs/a.jpg)"
    assert rewrite_image_refs(text, {"imgs/a.jpg": "imgs/b.jpg"}) == "imgs/b.jpg x/imgs/a.jpg imgs/a.jpgx (imgs/b.jpg)"
