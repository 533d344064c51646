"""Bytes on disk -> pages: type sniffing, page selection, PDF rasterising and image limits.

A :class:`Document` is opened from a file path and renders one page at a time, so a 500-page PDF is
never held in memory as 500 bitmaps. Every problem with the input becomes a :class:`ServiceError`
with a 4xx status.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ServiceError, invalid_field, too_large, unprocessable

# PIL's own bomb check would raise its own exception type; we enforce MAX_IMAGE_PIXELS ourselves.
Image.MAX_IMAGE_PIXELS = None

# PDFium is not thread-safe: every call into it goes through this lock.
_PDFIUM_LOCK = threading.Lock()

SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"%PDF-", 0, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"BM", 0, "image/bmp"),
]
SUPPORTED_TYPES = ("application/pdf", "image/png", "image/jpeg", "image/tiff", "image/webp", "image/bmp")


def sniff_content_type(head: bytes) -> str | None:
    """The document type from its first bytes (not from the filename), or None when unsupported."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, offset, content_type in SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    # Some PDF writers put junk before the header; PDF readers accept it within the first KiB.
    if b"%PDF-" in head[:1024]:
        return "application/pdf"
    return None


_RANGE = re.compile(r"^\s*(\d+)?\s*(-)?\s*(\d+)?\s*$")


_MAX_PAGE_DIGITS = 9


def _page_number(digits: str) -> int:
    """A page number; any number of more than 9 digits counts as 10**9 (past every document's end), so
    that no digit string, however long, is converted."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_PAGE_DIGITS else 10**_MAX_PAGE_DIGITS


def parse_page_spec(spec: str | None, page_count: int) -> list[int]:
    """Page numbers (1-based, ascending, unique) selected by ``spec`` such as ``"1-3,5,8-"``.

    ``None`` or an empty string selects every page. Raises a 422 naming ``pages`` on bad syntax or
    numbers outside ``1..page_count``.
    """
    if spec is None or not spec.strip():
        return list(range(1, page_count + 1))
    selected: set[int] = set()
    for part in spec.split(","):
        match = _RANGE.match(part)
        if not match or not (match.group(1) or match.group(3)):
            raise invalid_field("pages", f"cannot parse {part.strip()!r}; use forms like '1-3,5' or '4-'")
        start_s, dash, end_s = match.groups()
        start = _page_number(start_s) if start_s else 1
        end = (_page_number(end_s) if end_s else page_count) if dash else start
        if start < 1 or end < 1:
            raise invalid_field("pages", "page numbers start at 1")
        if start > end:
            raise invalid_field("pages", f"range {start}-{end} is reversed")
        if end > page_count:
            raise invalid_field("pages", f"page {end} does not exist; the document has {page_count} page(s)")
        selected.update(range(start, end + 1))
    return sorted(selected)


def check_dpi(dpi: int | None, default: int, maximum: int) -> int:
    if dpi is None:
        return default
    if not 50 <= dpi <= maximum:
        raise invalid_field("dpi", f"must be between 50 and {maximum}")
    return dpi


@dataclass(frozen=True)
class Limits:
    max_pages: int
    max_image_pixels: int


class Document(ABC):
    """An opened document. Not thread-safe: use it from one thread at a time."""

    content_type: str
    page_count: int

    @abstractmethod
    def render(self, number: int, dpi: int) -> Image.Image:
        """Page ``number`` (1-based) as an RGB image; PDF pages are rasterised at ``dpi``."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Document:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PdfDocument(Document):
    content_type = "application/pdf"

    def __init__(self, path: Path, limits: Limits) -> None:
        self._limits = limits
        with _PDFIUM_LOCK:
            try:
                self._pdf = pdfium.PdfDocument(str(path))
            except pdfium.PdfiumError as exc:
                code = getattr(exc, "err_code", None)
                if code in (pdfium_raw.FPDF_ERR_PASSWORD, pdfium_raw.FPDF_ERR_SECURITY):
                    raise unprocessable(
                        "pdf_encrypted", "the PDF is password-protected; remove the password and upload it again"
                    ) from None
                raise unprocessable("corrupt_document", "the PDF could not be read (corrupt or truncated)") from None
            self.page_count = len(self._pdf)
        if self.page_count == 0:
            self.close()
            raise unprocessable("corrupt_document", "the PDF has no pages")
        if self.page_count > limits.max_pages:
            self.close()
            raise too_large(
                "too_many_pages", f"the document has {self.page_count} pages; the limit is {limits.max_pages}"
            )

    def render(self, number: int, dpi: int) -> Image.Image:
        with _PDFIUM_LOCK:
            try:
                page = self._pdf[number - 1]
                try:
                    width_pt, height_pt = page.get_size()
                    scale = dpi / 72.0
                    pixels = width_pt * height_pt * scale * scale
                    if pixels > self._limits.max_image_pixels:
                        # A huge page size is not the client's fault: render it smaller, within the limit.
                        scale *= 0.995 * (self._limits.max_image_pixels / pixels) ** 0.5
                    bitmap = page.render(scale=scale)
                    try:
                        image: Image.Image = bitmap.to_pil().convert("RGB")
                    finally:
                        bitmap.close()
                finally:
                    page.close()
            except pdfium.PdfiumError:
                raise unprocessable("corrupt_document", f"page {number} of the PDF could not be rendered") from None
        return image

    def close(self) -> None:
        with _PDFIUM_LOCK:
            self._pdf.close()


class ImageDocument(Document):
    """PNG, JPEG, WebP, BMP (one page) and TIFF (every frame is a page)."""

    def __init__(self, path: Path, content_type: str, limits: Limits) -> None:
        self.content_type = content_type
        self._limits = limits
        self._path = path
        self._handed_over = False  # the only frame's pixels went to a caller (see render)
        try:
            self._image = Image.open(path)
        except (UnidentifiedImageError, OSError, ValueError):
            raise unprocessable("corrupt_document", "the image could not be read (corrupt or truncated)") from None
        self.page_count = getattr(self._image, "n_frames", 1) or 1
        if self.page_count > limits.max_pages:
            self.close()
            raise too_large(
                "too_many_pages", f"the image has {self.page_count} frames; the limit is {limits.max_pages}"
            )
        self._check_pixels()

    def _check_pixels(self) -> None:
        width, height = self._image.size
        if width * height > self._limits.max_image_pixels:
            raise too_large(
                "image_too_large",
                f"the image is {width}x{height} pixels; the limit is {self._limits.max_image_pixels} pixels",
            )

    def render(self, number: int, dpi: int) -> Image.Image:
        """The page as an RGB image the caller owns. A one-frame image is decoded straight into the page handed
        over and turned upright in place: no copy of its pixels (an A4 page at 150 dpi is ~6.5 MB, and the two
        copies a plain transpose-and-convert makes cost as much CPU as the decoding itself)."""
        try:
            frame: Image.Image
            if self.page_count == 1 and not self._handed_over:
                frame = self._image
                ImageOps.exif_transpose(frame, in_place=True)  # decodes it
                self._handed_over = True
            elif self.page_count == 1:  # asked again: decoded afresh, the first one is its caller's
                frame = Image.open(self._path)
                ImageOps.exif_transpose(frame, in_place=True)
            else:
                self._image.seek(number - 1)
                self._check_pixels()
                frame = ImageOps.exif_transpose(self._image) or self._image.copy()  # the document keeps its frames
            if frame.mode == "RGB":
                return frame
            if frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info):
                # Transparent areas become white paper rather than black.
                rgba = frame.convert("RGBA")
                canvas = Image.new("RGB", rgba.size, "white")
                canvas.paste(rgba, mask=rgba.getchannel("A"))
                return canvas
            return frame.convert("RGB")
        except ServiceError:
            raise
        except (OSError, ValueError, EOFError, SyntaxError):
            raise unprocessable("corrupt_document", f"page {number} of the image could not be decoded") from None

    def close(self) -> None:
        if not self._handed_over:  # once handed over, the frame is its caller's (its file closed when decoded)
            self._image.close()


def pdf_pages_with_text(path: Path, numbers: Sequence[int], minimum: int = 3) -> set[int]:
    """Which of the pages ``numbers`` (1-based) of a PDF already carry text: ``minimum`` or more characters other
    than spaces in their text layer (a digital PDF, or one a scanner already made searchable). An unreadable PDF
    or page counts as one without text. PDFium's lock is taken page by page (OCR of other jobs goes on)."""
    found: set[int] = set()
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError:
            return found
    try:
        for number in numbers:
            with _PDFIUM_LOCK:
                try:
                    page = pdf[number - 1]
                    textpage = page.get_textpage()
                    text = textpage.get_text_range()
                    textpage.close()
                    page.close()
                except (pdfium.PdfiumError, IndexError):
                    continue
            if sum(1 for char in text if not char.isspace()) >= minimum:
                found.add(number)
    finally:
        with _PDFIUM_LOCK:
            pdf.close()
    return found


def open_document(path: Path, content_type: str, limits: Limits) -> Document:
    """Open a sniffed document for page-by-page rendering."""
    if content_type == "application/pdf":
        return PdfDocument(path, limits)
    return ImageDocument(path, content_type, limits)
