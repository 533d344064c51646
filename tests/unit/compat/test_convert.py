"""Our results -> PaddleX ``/layout-parsing`` structures (pure functions), checked against real PaddleX output.

``PADDLEX_LAYOUT_PAGE`` is the ``parsing_res_list`` and Markdown that PaddleOCR-VL (paddleocr 3.3.3,
paddlex 3.3.13) produced for a generated page with layout detection on; ``PADDLEX_SERVE_KEYS`` are
the keys of a real ``paddlex --serve`` ``/layout-parsing`` answer.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from app.compat.convert import (
    DEFAULT_IGNORED_LABELS,
    data_info,
    layout_parsing_page,
    markdown_image_paths,
    model_settings,
    pruned_result,
)
from app.compat.schemas import ImageInfo, PdfInfo
from app.compat.visualize import draw_layout_order, jpeg_base64
from app.schemas import Block, PageResult

PADDLEX_LAYOUT_PAGE: dict[str, Any] = {
    "width": 800,
    "height": 1000,
    "parsing_res_list": [
        {"block_label": "doc_title", "block_content": "Quarterly Report", "block_bbox": [190, 20, 610, 70],
         "block_id": 0, "block_order": 1, "group_id": 0},
        {"block_label": "paragraph_title", "block_content": "1. Summary", "block_bbox": [30, 90, 300, 135],
         "block_id": 1, "block_order": 2, "group_id": 1},
        {"block_label": "text", "block_content": "Revenue grew strongly this quarter.",
         "block_bbox": [30, 140, 770, 200], "block_id": 2, "block_order": 3, "group_id": 2},
        {"block_label": "table",
         "block_content": "<table><tr><td>Name</td><td>Qty</td></tr><tr><td>Apple</td><td>3</td></tr></table>",
         "block_bbox": [40, 250, 760, 420], "block_id": 3, "block_order": None, "group_id": 3},
        {"block_label": "image", "block_content": "", "block_bbox": [200, 460, 600, 700],
         "block_id": 4, "block_order": None, "group_id": 4},
        {"block_label": "figure_title", "block_content": "Figure 1: Blue box", "block_bbox": [200, 705, 600, 735],
         "block_id": 5, "block_order": None, "group_id": 5},
        {"block_label": "display_formula", "block_content": " $$ E = mc^2 $$ ", "block_bbox": [280, 740, 520, 790],
         "block_id": 6, "block_order": 4, "group_id": 6},
        {"block_label": "number", "block_content": "7", "block_bbox": [370, 940, 410, 985],
         "block_id": 7, "block_order": None, "group_id": 7},
    ],
    "markdown": (
        "# Quarterly Report\n\n### 1. Summary\n\nRevenue grew strongly this quarter.\n\n\n"
        "<table border=1 style='margin: auto; width: max-content;'><tr><td style='text-align: center;'>Name</td>"
        "<td style='text-align: center;'>Qty</td></tr><tr><td style='text-align: center;'>Apple</td>"
        "<td style='text-align: center;'>3</td></tr></table>\n\n"
        '<div style="text-align: center;"><img src="imgs/img_in_image_box_200_460_600_700.jpg" alt="Image" '
        'width="50%" /></div>\n\n\n<div style="text-align: center;">Figure 1: Blue box</div>\n\n\n $$ E = mc^2 $$ '
    ),
}  # fmt: skip
PADDLEX_SERVE_KEYS = {
    "pruned": {"page_count", "width", "height", "model_settings", "parsing_res_list"},
    "model_settings": {
        "use_doc_preprocessor",
        "use_layout_detection",
        "use_chart_recognition",
        "format_block_content",
        "merge_layout_blocks",
        "markdown_ignore_labels",
    },
    "block": {"block_label", "block_content", "block_bbox", "block_id", "block_order", "group_id"},
}


def vl_page() -> PageResult:
    """The PaddleOCR-VL page as our engine mapping would hand it over: blocks with label, bbox, text, order."""
    blocks = [
        Block(bbox=[float(v) for v in b["block_bbox"]], text=b["block_content"], label=b["block_label"], order=i)
        for i, b in enumerate(PADDLEX_LAYOUT_PAGE["parsing_res_list"])
    ]
    blocks.reverse()  # the conversion must sort by order, not trust the list order
    return PageResult(index=1, width=800, height=1000, blocks=blocks, markdown=PADDLEX_LAYOUT_PAGE["markdown"], text="")


def line_page() -> PageResult:
    blocks = [
        Block(bbox=[110.4, 118.6, 812.2, 152.0], text="Invoice 2024-117", score=0.99, order=0),
        Block(bbox=[110.0, 170.0, 700.0, 204.0], text="Total 1,234.56 EUR", score=0.98, order=1),
    ]
    return PageResult(index=1, width=1240, height=1754, blocks=blocks, markdown="Invoice 2024-117\nTotal", text="")


def test_vl_blocks_reproduce_paddlex_parsing_res_list() -> None:
    pruned = pruned_result(vl_page(), model_settings("paddleocr-vl"))
    assert set(pruned) == PADDLEX_SERVE_KEYS["pruned"]
    assert pruned["parsing_res_list"] == PADDLEX_LAYOUT_PAGE["parsing_res_list"]
    assert (pruned["width"], pruned["height"], pruned["page_count"]) == (800, 1000, None)


def test_model_settings_keys_and_line_engines() -> None:
    for engine in ("pp-ocr", "tesseract", "paddleocr-vl"):
        settings = model_settings(engine)
        assert set(settings) == PADDLEX_SERVE_KEYS["model_settings"]
        assert settings["markdown_ignore_labels"] == list(DEFAULT_IGNORED_LABELS)
        assert settings["use_doc_preprocessor"] is False
    assert model_settings("pp-ocr")["use_layout_detection"] is False
    assert model_settings("paddleocr-vl")["use_layout_detection"] is True


def test_line_blocks_become_ordered_text_blocks_with_integer_boxes() -> None:
    blocks = pruned_result(line_page(), model_settings("pp-ocr"))["parsing_res_list"]
    assert [set(b) for b in blocks] == [PADDLEX_SERVE_KEYS["block"]] * 2
    assert blocks[0] == {
        "block_label": "text",
        "block_content": "Invoice 2024-117",
        "block_bbox": [110, 119, 812, 152],
        "block_id": 0,
        "block_order": 1,
        "group_id": 0,
    }
    assert [b["block_order"] for b in blocks] == [1, 2]


def test_ignored_labels_leave_the_reading_order() -> None:
    settings = {**model_settings("paddleocr-vl"), "markdown_ignore_labels": ["text"]}
    blocks = pruned_result(vl_page(), settings)["parsing_res_list"]
    orders = {b["block_label"]: b["block_order"] for b in blocks}
    assert orders["text"] is None and orders["number"] == 4  # "number" is no longer ignored here
    assert orders["doc_title"] == 1 and orders["display_formula"] == 3


def test_failed_page_keeps_its_place_with_the_reason() -> None:
    page = PageResult(index=2, width=0, height=0, blocks=[], markdown="", text="", error="page 2 is corrupt")
    pruned = pruned_result(page, model_settings("pp-ocr"))
    assert pruned["parsing_res_list"] == [] and pruned["error"] == "page 2 is corrupt"


def test_markdown_image_paths() -> None:
    assert markdown_image_paths(PADDLEX_LAYOUT_PAGE["markdown"]) == ["imgs/img_in_image_box_200_460_600_700.jpg"]
    markdown = (
        "![chart](imgs/chart_1.jpg) ![dup](imgs/chart_1.jpg) <img src='imgs/b.png'>"
        " ![remote](https://example.com/x.png) ![up](../secret.jpg) ![abs](/etc/x.jpg) ![d](data:image/png;base64,AA)"
    )
    assert markdown_image_paths(markdown) == ["imgs/chart_1.jpg", "imgs/b.png"]


def test_data_info_for_images_and_pdfs() -> None:
    page = line_page()
    assert data_info("image/png", [page]) == ImageInfo(width=1240, height=1754)
    second = page.model_copy(update={"index": 2, "width": 800})
    info = data_info("application/pdf", [page, second])
    assert isinstance(info, PdfInfo)
    assert info.model_dump() == {
        "numPages": 2,
        "pages": [{"width": 1240, "height": 1754}, {"width": 800, "height": 1754}],
        "type": "pdf",
    }


def test_layout_parsing_page_leaves_out_images_unless_visualized() -> None:
    plain = layout_parsing_page(line_page(), model_settings("pp-ocr")).model_dump(exclude_none=True)
    assert set(plain) == {"prunedResult", "markdown"}
    assert plain["markdown"] == {"text": "Invoice 2024-117\nTotal", "images": {}}
    shown = layout_parsing_page(
        vl_page(), model_settings("paddleocr-vl"), {"imgs/a.jpg": "QUJD"}, ("SU5QVVQ=", {"layout_order_res": "T1VU"})
    ).model_dump(exclude_none=True)
    assert shown["markdown"]["images"] == {"imgs/a.jpg": "QUJD"}
    assert shown["inputImage"] == "SU5QVVQ=" and shown["outputImages"] == {"layout_order_res": "T1VU"}


def test_layout_order_image_marks_the_blocks() -> None:
    page = vl_page()
    image = Image.new("RGB", (400, 500), "white")  # half the page size: boxes are scaled
    drawn = draw_layout_order(image, page)
    assert drawn.size == image.size and image.getpixel((200, 150)) == (255, 255, 255)
    assert drawn.getpixel((200, 85)) != (255, 255, 255)  # inside the "text" block (30,140)-(770,200) / 2
    assert drawn.getpixel((5, 495)) == (255, 255, 255)  # outside every block


def test_jpeg_base64_scales_down_to_2000() -> None:
    encoded = jpeg_base64(Image.new("RGB", (5000, 1000), "white"))
    with Image.open(io.BytesIO(base64.b64decode(encoded))) as decoded:
        assert decoded.format == "JPEG" and decoded.size == (2000, 400)
    with Image.open(io.BytesIO(base64.b64decode(jpeg_base64(Image.new("L", (300, 200)))))) as small:
        assert small.size == (300, 200) and small.mode == "RGB"
