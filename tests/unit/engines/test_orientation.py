"""Pages turned upright: how a reading is judged upright, turning images, OSD on generated pages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engines.base import EnginePage
from app.engines.orientation import OrientationDetector, Reading, assess, lies_sideways, turn
from app.engines.tesseract import find_tessdata
from app.schemas import Block
from tests.support.documents import ENGLISH_LINES, MIXED_LINES, RUSSIAN_LINES, photographed, render_page


def block(text: str, bbox: tuple[float, float, float, float], score: float | None = 0.95) -> Block:
    return Block(bbox=list(bbox), text=text, score=score)


def test_a_confident_horizontal_reading_is_upright() -> None:
    page = EnginePage(blocks=[block("Quarterly report", (100, 100, 600, 130)), block("I", (100, 140, 110, 170))])
    reading = assess(page)
    assert reading.chars == 17 and reading.confidence == pytest.approx(0.95) and reading.sideways == 0
    assert reading.upright and reading.quality == pytest.approx(0.95)


def test_low_confidence_or_tall_lines_are_not_upright() -> None:
    garbage = assess(EnginePage(blocks=[block("ʇɹodǝɹ ʎlɹǝʇɹɐnQ", (100, 100, 600, 130), 0.3)]))
    assert not garbage.upright
    sideways = assess(EnginePage(blocks=[block("Quarterly report", (100, 100, 130, 600))]))
    assert sideways.sideways == 1.0 and not sideways.upright and sideways.quality == 0
    unknown = assess(EnginePage(blocks=[block("Quarterly report", (100, 100, 600, 130), None)]))
    assert unknown.confidence == 0 and not unknown.upright


def test_a_column_of_sideways_lines_read_as_one_block_is_not_upright() -> None:
    """Tesseract reads a page lying on its side as vertical text: one confident "line" per column of lines."""
    blob = block("Shipping address: 42 Harbour Street, Dublin Contact our support team " * 10, (192, 110, 1659, 671))
    reading = assess(EnginePage(blocks=[blob]))
    assert reading.confidence == pytest.approx(0.95) and reading.sideways == 1.0 and not reading.upright
    assert not lies_sideways((100, 100, 230, 130), 8)  # "Invoice:" at 24 px: a line
    assert not lies_sideways((100, 100, 108, 130), 1) and not lies_sideways((100, 100, 112, 130), 2)  # "I", "Il"


def test_too_little_text_is_left_alone() -> None:
    assert assess(EnginePage(blocks=[])) == Reading(0, 0.0, 0.0)
    assert assess(EnginePage(blocks=[block("ok", (0, 0, 5, 50), 0.1)])).upright


def test_turn_is_clockwise_and_undone_by_the_rest_of_a_turn() -> None:
    image = Image.new("RGB", (40, 20), "white")
    image.putpixel((0, 0), (255, 0, 0))  # top left
    clockwise = turn(image, 90)
    assert clockwise.size == (20, 40) and clockwise.getpixel((19, 0)) == (255, 0, 0)  # now top right
    assert turn(image, 180).getpixel((39, 19)) == (255, 0, 0)
    assert turn(image, 0) is image
    for rotation in (90, 180, 270):
        back = turn(turn(image, rotation), 360 - rotation)
        assert np.array_equal(np.asarray(back), np.asarray(image))


@pytest.fixture(scope="module")
def detector() -> OrientationDetector:
    found = OrientationDetector.find(find_tessdata())
    assert found is not None, "apt-get install tesseract-ocr-osd"
    return found


@pytest.mark.parametrize(
    ("lines", "rotation"),
    [
        (ENGLISH_LINES, 0),
        (ENGLISH_LINES, 90),
        (ENGLISH_LINES, 180),
        (ENGLISH_LINES, 270),
        (RUSSIAN_LINES, 90),
        (MIXED_LINES, 180),
    ],
)
def test_osd_says_how_to_turn_a_page_upright(detector: OrientationDetector, lines: list[str], rotation: int) -> None:
    lying = turn(render_page(lines), rotation)
    assert detector.detect(lying) == (360 - rotation) % 360


def test_osd_on_a_photographed_page(detector: OrientationDetector) -> None:
    assert detector.detect(turn(photographed(render_page(MIXED_LINES)), 90)) == 270


def test_osd_is_unsure_of_blank_and_nearly_blank_pages(detector: OrientationDetector, tmp_path: Path) -> None:
    assert detector.detect(Image.new("RGB", (1240, 1754), "white")) is None
    assert detector.detect(render_page(["Hi"])) is None
    assert OrientationDetector.find(tmp_path) is None  # no osd.traineddata
    assert OrientationDetector.find(None) is None
