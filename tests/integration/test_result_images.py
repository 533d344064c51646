"""Figures an engine returns with a page are stored next to result.md, one file per page, referenced relatively;
``/layout-parsing`` hands them back in each page's ``markdown.images``, read from the stored result.

The engine is the real pp-ocr engine that also hands back a crop of the page under a fixed name, the way
PaddleOCR-VL names figures after their box: two pages with a figure at the same place collide unless the
service makes the names unique.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.engines.base import EnginePage
from app.engines.pp_ocr import PpOcrEngine
from app.main import create_app
from app.settings import Settings
from tests.support.documents import image_bytes, page_lines, pdf_bytes, render_page
from tests.support.server import ThreadServer, wait_for

pytestmark = pytest.mark.integration

FIGURE = "imgs/img_in_image_box_0_0_400_120.jpg"


class FigureEngine(PpOcrEngine):
    """pp-ocr plus the page's top-left corner as a figure, like the VLM pipeline's image blocks."""

    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        pages = super().recognize(images, languages)
        for image, page in zip(images, pages, strict=True):
            lines = "\n".join(b.text for b in sorted(page.blocks, key=lambda b: b.bbox[1]))
            page.markdown = f'{lines}\n\n<img src="{FIGURE}" alt="Image" />'
            page.images = {FIGURE: image_bytes(image.crop((0, 0, 400, 120)), "JPEG")}
        return pages


def test_each_page_figure_is_its_own_file_next_to_result_md(tmp_path: Path) -> None:
    pages = [render_page(page_lines(n)[:2], size=(900, 240), top=40) for n in (1, 2)]
    app = create_app(Settings(output_dir=tmp_path), engine=FigureEngine())
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        wait_for(lambda: client.get("/health").json()["status"] == "healthy", 60, "engine ready")
        response = client.post("/ocr", files={"file": ("two.pdf", pdf_bytes(pages))})
        parsed = client.post("/layout-parsing", json={"file": base64.b64encode(pdf_bytes(pages)).decode()})
    assert response.status_code == 200, response.text
    assert parsed.status_code == 200, parsed.text
    body = response.json()
    result_md = tmp_path / body["files"]["markdown"]
    markdown = result_md.read_text()
    references = re.findall(r'<img src="([^"]+)"', markdown)
    assert references == ["imgs/page1_img_in_image_box_0_0_400_120.jpg", "imgs/page2_img_in_image_box_0_0_400_120.jpg"]
    assert [re.findall(r'src="([^"]+)"', p["markdown"]) for p in body["pages"]] == [[ref] for ref in references]
    crops = []
    for reference in references:
        stored = Image.open(io.BytesIO((result_md.parent / reference).read_bytes()))
        assert stored.format == "JPEG" and stored.size == (400, 120)
        crops.append(stored.convert("L").tobytes())
    assert crops[0] != crops[1]  # "Page 1 ..." and "Page 2 ..." were drawn there: each page kept its own figure
    for page, reference, crop in zip(parsed.json()["result"]["layoutParsingResults"], references, crops, strict=True):
        assert list(page["markdown"]["images"]) == [reference]
        image = Image.open(io.BytesIO(base64.b64decode(page["markdown"]["images"][reference])))
        assert image.size == (400, 120) and image.convert("L").tobytes() == crop
