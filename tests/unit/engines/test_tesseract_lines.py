"""The tesseract engine's pure parts: lines -> blocks and Markdown, finding the models, load errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engines.base import EngineLoadError
from app.engines.tesseract import TesseractEngine, TextLine, find_tessdata, page_from_lines


def line(text: str, top: int, new_paragraph: bool = False, confidence: float = 0.95) -> TextLine:
    return TextLine(text=text, bbox=(100, top, 600, top + 30), confidence=confidence, starts_paragraph=new_paragraph)


def test_lines_keep_tesseract_order_and_paragraphs() -> None:
    lines = [
        line("Right column, first line\n", 100, new_paragraph=True),  # Tesseract's order, not top-to-bottom
        line("  spaced   out  ", 140),
        line("   ", 160),  # nothing readable: dropped
        line("# not a heading", 50, new_paragraph=True),
        line("1. not a list", 90, confidence=1.7),
    ]
    page = page_from_lines(lines)
    texts = ["Right column, first line", "spaced out", "# not a heading", "1. not a list"]
    assert [b.text for b in page.blocks] == texts
    assert [b.order for b in page.blocks] == [0, 1, 2, 3]
    assert page.blocks[0].bbox == [100.0, 100.0, 600.0, 130.0] and page.blocks[0].label == "text"
    assert page.blocks[3].score == 1.0  # clamped to 0..1
    assert page.markdown == "Right column, first line\nspaced out\n\n\\# not a heading\n1\\. not a list"
    assert page.images == {}


def test_first_line_opens_a_paragraph_and_empty_pages_are_empty() -> None:
    assert page_from_lines([line("alone", 10)]).markdown == "alone"
    empty = page_from_lines([])
    assert empty.blocks == [] and empty.markdown == ""


def test_find_tessdata(tmp_path: Path) -> None:
    empty, models = tmp_path / "empty", tmp_path / "models"
    empty.mkdir()
    models.mkdir()
    (models / "rus.traineddata").touch()
    assert find_tessdata("", [tmp_path / "missing", empty, models]) == models
    assert find_tessdata("", [empty]) is None
    assert find_tessdata(f" {empty} ", [models]) == empty  # TESSDATA_DIR wins, as given


def test_missing_models_fail_loading_with_the_fix(tmp_path: Path) -> None:
    nothing = TesseractEngine(None)
    assert nothing.languages == frozenset()
    with pytest.raises(EngineLoadError, match="install the Debian packages tesseract-ocr-rus tesseract-ocr-eng"):
        nothing.load()
    with pytest.raises(EngineLoadError, match=f"no \\*.traineddata in TESSDATA_DIR={tmp_path}"):
        TesseractEngine(tmp_path).load()


def test_default_languages_are_the_installed_ones(tmp_path: Path) -> None:
    (tmp_path / "eng.traineddata").touch()
    assert TesseractEngine(tmp_path, default_languages=("ru", "en")).default_languages == ("en",)
    assert TesseractEngine(tmp_path, default_languages=("ru",)).default_languages == ("en",)
    (tmp_path / "eng.traineddata").unlink()
    (tmp_path / "deu.traineddata").touch()
    assert TesseractEngine(tmp_path, default_languages=("ru",)).default_languages == ("de",)


def piece(text: str, bbox: tuple[int, int, int, int], new_paragraph: bool = False) -> TextLine:
    return TextLine(text=text, bbox=bbox, confidence=0.9, starts_paragraph=new_paragraph)


def test_pieces_of_a_sloping_line_are_joined_where_the_first_was() -> None:
    """A photographed page: Tesseract cut a line inside a word and listed its right piece first."""
    lines = [
        piece("Invoice 2024-117 was paid.", (115, 1233, 684, 1273), new_paragraph=True),
        piece("k brown fox jumps over the lazy dog.", (224, 1311, 671, 1347)),
        piece("The quic", (117, 1329, 221, 1354), new_paragraph=True),
        piece("Quarterly report", (123, 1390, 650, 1432), new_paragraph=True),
        piece("PATH содержит список", (448, 1530, 1034, 1571)),  # the right piece sits higher: overlap 0.44
        piece("Переменная окружения", (133, 1557, 438, 1589)),
    ]
    page = page_from_lines(lines)
    assert [b.text for b in page.blocks] == [
        "Invoice 2024-117 was paid.",
        "The quick brown fox jumps over the lazy dog.",  # no gap: no space
        "Quarterly report",
        "Переменная окружения PATH содержит список",  # a gap of 10 px at a height of 32: a space
    ]
    assert page.blocks[1].bbox == [117.0, 1311.0, 671.0, 1354.0]
    assert page.markdown is not None and page.markdown.startswith("Invoice 2024-117 was paid.\nThe quick brown fox")


def test_columns_and_lines_above_each_other_stay_apart() -> None:
    lines = [
        piece("Left column text", (80, 100, 560, 126)),
        piece("Right column text", (660, 100, 1140, 126)),  # a gap of 100 px: a column
        piece("Next line, left", (80, 150, 560, 176)),  # below: no vertical overlap
        piece("Stacked", (80, 120, 300, 146)),  # overlaps the first line but lies across it
    ]
    assert [b.text for b in page_from_lines(lines).blocks] == [line.text for line in lines]
