"""Download names (RFC 5987), S3_RESULT_FORMATS, and PP-OCR's word boxes matched to their lines."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from pydantic import ValidationError

from app.engines.pp_ocr import blocks_from_rapidocr, line_words
from app.exports.formats import content_disposition, download_name
from app.settings import Settings


@pytest.mark.parametrize(
    ("uploaded", "expected"),
    [
        ("Договор поставки №5.pdf", "Договор поставки №5.docx"),
        ("scan.final.jpg", "scan.final.docx"),
        ("C:\\Users\\me\\report.tif", "report.docx"),
        ("../../etc/passwd", "passwd.docx"),
        ("bad\x00\r\nname.png", "badname.docx"),
        (None, "document-abc.docx"),
        (".pdf", "pdf.docx"),
        ("", "document-abc.docx"),
    ],
)
def test_download_name(uploaded: str | None, expected: str) -> None:
    assert download_name(uploaded, "abc", "docx") == expected


def test_content_disposition_has_an_ascii_name_and_the_exact_one() -> None:
    header = content_disposition('Отчёт "Q1".pdf')
    ascii_part, exact = header.split("; filename*=UTF-8''")
    assert ascii_part == 'attachment; filename="Q1.pdf"'
    assert all(ord(c) < 128 for c in header) and "\n" not in header
    assert unquote(exact) == 'Отчёт "Q1".pdf'
    assert content_disposition("Отчёт.pdf").startswith('attachment; filename="document.pdf"')
    assert content_disposition("Résumé.docx").startswith('attachment; filename="Resume.docx"')


def test_s3_result_formats() -> None:
    assert Settings().s3_result_formats == "json,md" and Settings().s3_export_formats == ()
    named = Settings(s3_result_formats=" PDF; xlsx ")
    assert named.s3_result_formats == "json,md,pdf,xlsx" and named.s3_export_formats == ("pdf", "xlsx")
    with pytest.raises(ValidationError, match="unknown format"):
        Settings(s3_result_formats="pdf,html")


def quad(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_pp_ocr_words_follow_their_lines_even_when_rapidocr_leaves_lines_out() -> None:
    texts = ["Hello world", "no boxes here", "Bye"]
    word_results = (  # rapidocr left out the second line's (empty) entry
        (("Hello", 0.9, quad(0, 0, 50, 20)), ("world", 0.8, quad(60, 0, 110, 20))),
        (("Bye", 0.7, quad(0, 40, 30, 60)),),
    )
    words = line_words(texts, word_results)
    assert [[w.text for w in line] if line else None for line in words] == [["Hello", "world"], None, ["Bye"]]
    assert words[0] is not None and words[0][1].bbox == [60.0, 0.0, 110.0, 20.0] and words[0][1].score == 0.8
    blocks = blocks_from_rapidocr(
        [quad(0, 0, 110, 20), quad(0, 20, 120, 35), quad(0, 40, 30, 60)], texts, [1, 1, 1], word_results
    )
    assert [len(b.words or []) for b in blocks] == [2, 0, 1]
    assert line_words(["a"], None) == [None]
