"""Type sniffing, page selection, DPI bounds and document opening (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from app.api.errors import http_status
from app.documents import Limits, check_dpi, open_document, parse_page_spec, sniff_content_type
from app.errors import ServiceError
from tests.support.documents import image_bytes, pdf_bytes, render_page


@pytest.mark.parametrize(
    "head,expected",
    [
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\xef\xbb\xbf  %PDF-1.4", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"BM\x00\x00", "image/bmp"),
        (b"GIF89a", None),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, expected: str | None) -> None:
    assert sniff_content_type(head) == expected


@pytest.mark.parametrize(
    "spec,count,expected",
    [
        (None, 3, [1, 2, 3]),
        ("", 3, [1, 2, 3]),
        ("2", 3, [2]),
        ("1-3,5", 6, [1, 2, 3, 5]),
        (" 5 , 1-2 ", 6, [1, 2, 5]),
        ("4-", 6, [4, 5, 6]),
        ("-2", 6, [1, 2]),
        ("2,2,1-2", 3, [1, 2]),
    ],
)
def test_parse_page_spec(spec: str | None, count: int, expected: list[int]) -> None:
    assert parse_page_spec(spec, count) == expected


@pytest.mark.parametrize("spec", ["a", "1-2-3", "0", "3-1", "7", "1,,2", "-", "1.5", "2-9"])
def test_parse_page_spec_rejects(spec: str) -> None:
    with pytest.raises(ServiceError) as info:
        parse_page_spec(spec, 6)
    assert http_status(info.value) == 422 and info.value.details["field"] == "pages"


def test_check_dpi() -> None:
    assert check_dpi(None, 150, 300) == 150
    assert check_dpi(200, 150, 300) == 200
    for bad in (10, 49, 301):
        with pytest.raises(ServiceError):
            check_dpi(bad, 150, 300)


LIMITS = Limits(max_pages=10, max_image_pixels=20_000_000)


def test_pdf_pages_render_one_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf_bytes([render_page(["one"]), render_page(["two"])], dpi=150))
    with open_document(path, "application/pdf", LIMITS) as document:
        assert document.page_count == 2
        image = document.render(2, 75)
        assert image.mode == "RGB"
        assert abs(image.width - 620) <= 1 and abs(image.height - 877) <= 1


def test_giant_pdf_page_is_rendered_within_the_pixel_limit(tmp_path: Path) -> None:
    path = tmp_path / "poster.pdf"
    path.write_bytes(pdf_bytes([Image.new("RGB", (2000, 2000), "white")], dpi=10))  # 200 x 200 inches
    with open_document(path, "application/pdf", LIMITS) as document:
        image = document.render(1, 150)
        assert image.width * image.height <= LIMITS.max_image_pixels


def test_transparent_png_becomes_white(tmp_path: Path) -> None:
    path = tmp_path / "t.png"
    path.write_bytes(image_bytes(Image.new("RGBA", (50, 40), (0, 0, 0, 0)), "PNG"))
    with open_document(path, "image/png", LIMITS) as document:
        assert document.render(1, 150).getpixel((10, 10)) == (255, 255, 255)
