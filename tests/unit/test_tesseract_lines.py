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
