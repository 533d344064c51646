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


def _gradient(size: tuple[int, int] = (64, 48)) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata([(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])])
    return image


@pytest.mark.parametrize("fmt,content_type", [("PNG", "image/png"), ("BMP", "image/bmp"), ("TIFF", "image/tiff")])
def test_a_one_frame_page_is_the_callers_own_and_outlives_its_document(
    tmp_path: Path, fmt: str, content_type: str
) -> None:
    """The frame is decoded straight into the page handed over (no copy); closing the document must not take it
    away, and a second render of the same page is a separate image with the same pixels."""
    original = _gradient()
    path = tmp_path / f"page.{fmt.lower()}"
    path.write_bytes(image_bytes(original, fmt))
    document = open_document(path, content_type, LIMITS)
    first = document.render(1, 150)
    second = document.render(1, 150)
    document.close()
    assert first is not second
    first.putpixel((0, 0), (1, 2, 3))  # the caller's to change: the other copy does not move
    assert second.getpixel((0, 0)) == original.getpixel((0, 0))
    assert first.mode == second.mode == "RGB"
    assert second.tobytes() == original.tobytes()
    assert first.tobytes()[3:] == original.tobytes()[3:]


def test_a_jpeg_with_an_exif_orientation_is_turned_upright_on_every_render(tmp_path: Path) -> None:
    upright = _gradient((60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: "rotate 90 CW to view"
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    path = tmp_path / "turned.jpg"
    stored.save(path, "JPEG", quality=95, exif=exif)
    with open_document(path, "image/jpeg", LIMITS) as document:
        pages = [document.render(1, 150), document.render(1, 150)]
    for page in pages:
        assert page.size == (60, 40)
        assert abs(sum(page.getpixel((59, 39))) - sum(upright.getpixel((59, 39)))) < 30


def test_frames_of_a_multi_page_tiff_are_separate_images(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (30, 20), colour) for colour in ("red", "green", "blue")]
    path = tmp_path / "pages.tif"
    frames[0].save(path, "TIFF", save_all=True, append_images=frames[1:])
    with open_document(path, "image/tiff", LIMITS) as document:
        pages = [document.render(n, 150) for n in (1, 2, 3, 1)]
    assert [page.getpixel((5, 5)) for page in pages] == [(255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 0, 0)]


def test_a_grey_page_comes_as_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    path.write_bytes(image_bytes(Image.new("L", (20, 10), 100), "PNG"))
    with open_document(path, "image/png", LIMITS) as document:
        page = document.render(1, 150)
    assert page.mode == "RGB" and page.getpixel((3, 3)) == (100, 100, 100)
