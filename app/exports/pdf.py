"""The searchable PDF: the document's own pages with an invisible text layer where the text was recognised.

Built from three maintained libraries, no PDF syntax written here:

- **pikepdf** (qpdf) opens the uploaded PDF and keeps its pages as they are — content streams, fonts, images and
  annotations untouched, nothing re-rasterised — keeps the pages the job read, and writes the result to disk
  (qpdf reads the source's streams when it writes them, so a long PDF is not held in memory).
- **img2pdf** wraps images losslessly: a JPEG's bytes go in unchanged, PNG and TIFF (CCITT G4 too) without
  re-compression where the PDF format allows it, other formats as lossless Flate. An EXIF rotation becomes the
  page's ``/Rotate``.
- **fpdf2** draws the text layer: text render mode 3 (invisible), an embedded subset of DejaVu Sans (every
  Latin, Cyrillic and Greek letter; ``DroidSansFallbackFull`` adds CJK where installed) with a ``ToUnicode``
  map, so copied and searched text is the recognised Unicode text. Each word is stretched (``Tz``) across its
  box; a line has one baseline and size, from its band (:mod:`app.exports.text_layer`).

**A page with text of its own** (a digital PDF, or one already made searchable) is kept as it is, without a
second layer: search and copy would find its text twice. **Pages the service turned upright**
(``PageResult.rotation``): the page's ``/Rotate`` is increased by that many degrees, so viewers show the page
upright, as the result's boxes describe it; the text layer is drawn in that upright frame and placed with the
inverse of the page's rotation (qpdf's form placement), so it runs along the text. **A page that failed OCR** is
kept, without text. When the original cannot be opened by qpdf or img2pdf, its pages are rasterised at the job's
dpi and wrapped losslessly instead.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from app.documents import Limits, open_document, pdf_pages_with_text
from app.errors import ServiceError
from app.exports.text_layer import PlacedLine, page_text_lines
from app.schemas import DocumentResult, PageResult

log = logging.getLogger(__name__)

FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)
"""The text layer's font (Debian: fonts-dejavu-core)."""
FALLBACK_FONTS = (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),)
"""Used for characters DejaVu Sans lacks (Debian: fonts-droid-fallback), where installed."""
CHUNK_PAGES = 100
"""Text-layer pages made at a time: memory stays bounded for long documents (each chunk embeds its font subset)."""
MIN_FONT_PT = 0.5


class PdfUnavailable(Exception):
    """The PDF cannot be made here (no font installed); the message says what to install."""


def font_path() -> Path:
    for candidate in FONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise PdfUnavailable("no DejaVu Sans font for the PDF text layer: install the Debian package fonts-dejavu-core")


def write_searchable_pdf(
    result: DocumentResult, document: Path, content_type: str, target: Path, *, dpi: int, limits: Limits
) -> None:
    """Write ``result``'s pages of ``document`` (the uploaded file) with their text layer to ``target`` (atomically).

    The pages are those of ``result.pages`` (the job's pages, in order). Raises :class:`PdfUnavailable` without a
    font; errors of the document itself fall back to rasterised pages (see the module docstring).
    """
    import pikepdf

    font = font_path()
    source = _Source(document, content_type, [page.index for page in result.pages], dpi, limits)
    with ExitStack() as stack:
        base = _base_pdf(source, stack)
        has_text = pdf_pages_with_text(document, source.numbers) if content_type == "application/pdf" else set()
        for first in range(0, len(result.pages), CHUNK_PAGES):
            pages = base.pages[first : first + CHUNK_PAGES]
            chunk = [
                (page, result, result.index not in has_text)
                for page, result in zip(pages, result.pages[first : first + CHUNK_PAGES], strict=True)
            ]
            _add_text_layer(base, chunk, font, stack)
        base.docinfo[pikepdf.Name.Producer] = "paddleocr-vl-service (pikepdf, fpdf2)"
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            base.save(temporary, compress_streams=True, object_stream_mode=pikepdf.ObjectStreamMode.generate)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


# --- the pages as they came ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Source:
    document: Path
    content_type: str
    numbers: Sequence[int]  # the pages to keep (1-based, ascending)
    dpi: int
    limits: Limits


def _base_pdf(source: _Source, stack: ExitStack) -> Any:
    """A pikepdf document holding exactly the pages ``source.numbers`` of the document, in that order."""
    import pikepdf

    document, content_type, numbers = source.document, source.content_type, source.numbers
    try:
        if content_type == "application/pdf":
            pdf = stack.enter_context(pikepdf.open(document))
        else:
            pdf = stack.enter_context(pikepdf.open(io.BytesIO(_wrap_image(document))))
        count = len(pdf.pages)
        if any(n > count for n in numbers):
            raise ValueError(f"the document has {count} pages, the result names page {max(numbers)}")
        _keep_pages(pdf, numbers)
        return pdf
    except (pikepdf.PdfError, ValueError, OSError) as exc:
        log.warning("PDF export: the document's own pages cannot be kept (%s); its pages are rasterised", exc)
    return _rasterised(source, stack)


def _keep_pages(pdf: Any, numbers: Sequence[int]) -> None:
    wanted = set(numbers)
    for index in range(len(pdf.pages) - 1, -1, -1):
        if index + 1 not in wanted:
            del pdf.pages[index]
    if sorted(numbers) != list(numbers) or len(wanted) != len(numbers):  # never from a job: pages are sorted, unique
        raise ValueError("the result's pages are not in document order")


def _wrap_image(path: Path) -> bytes:
    """The image as a PDF (img2pdf, lossless). A mirrored EXIF orientation, which a page rotation cannot express,
    raises ValueError (the pages are then rasterised as the engine saw them)."""
    import img2pdf

    with Image.open(path) as image:
        orientation = image.getexif().get(0x0112, 1)
    if orientation in (2, 4, 5, 7):
        raise ValueError(f"EXIF orientation {orientation} mirrors the image")
    try:
        data: bytes = img2pdf.convert(str(path), rotation=img2pdf.Rotation.auto, layout_fun=_page_layout)
    except Exception as exc:  # img2pdf's own errors (unsupported format, alpha channel, ...)
        raise ValueError(f"img2pdf: {exc}") from None
    return data


def _page_layout(width_px: int, height_px: int, dpi: tuple[float, float]) -> tuple[float, float, float, float]:
    """img2pdf's layout: the image's own resolution (96 dpi when it has none), shrunk to PDF's 200-inch limit."""
    x_dpi, y_dpi = (value if value and value > 1 else 96.0 for value in dpi)
    width, height = width_px * 72.0 / x_dpi, height_px * 72.0 / y_dpi
    scale = min(1.0, 14400.0 / max(width, height))
    width, height = max(3.0, width * scale), max(3.0, height * scale)
    return width, height, width, height


def _rasterised(source: _Source, stack: ExitStack) -> Any:
    """The pages rendered as the engine saw them (PDF at ``dpi``, images upright), each wrapped losslessly;
    one page in memory at a time (each is written to a temporary file that qpdf reads when saving)."""
    import img2pdf
    import pikepdf

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pdf-export-")))
    pdf = stack.enter_context(pikepdf.new())
    dpi, content_type = source.dpi, source.content_type
    with open_document(source.document, content_type, source.limits) as opened:
        size = (1240, 1754)
        for number in source.numbers:
            try:
                image = opened.render(number, dpi)
            except ServiceError:  # a page that cannot be decoded still has its place: a blank page
                image = Image.new("RGB", size, "white")
            size = image.size
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            resolution = (float(dpi), float(dpi)) if content_type == "application/pdf" else (96.0, 96.0)
            page_file = folder / f"{number}.pdf"
            page_file.write_bytes(img2pdf.convert(buffer.getvalue(), layout_fun=_fixed(resolution)))
            page_pdf = stack.enter_context(pikepdf.open(page_file))
            pdf.pages.append(page_pdf.pages[0])
    return pdf


def _fixed(resolution: tuple[float, float]) -> Any:
    def layout(width_px: int, height_px: int, dpi: tuple[float, float]) -> tuple[float, float, float, float]:
        return _page_layout(width_px, height_px, resolution)

    return layout


# --- the text layer --------------------------------------------------------------------------------
def _inherited(page: Any, key: str) -> Any:
    node = page.obj
    while node is not None:
        if key in node:
            return node[key]
        node = node.get("/Parent")
    return None


def _upright_size(page: Any) -> tuple[float, float]:
    """The page's visible size in points as a viewer shows it (its CropBox, turned by ``/Rotate``)."""
    box = [float(v) for v in page.cropbox]
    width, height = abs(box[2] - box[0]), abs(box[3] - box[1])
    rotate = int(_inherited(page, "/Rotate") or 0) % 360
    return (height, width) if rotate in (90, 270) else (width, height)


def _add_text_layer(pdf: Any, chunk: Sequence[tuple[Any, PageResult, bool]], font: Path, stack: ExitStack) -> None:
    """Turn each page of ``chunk`` upright as the service read it and, when ``wanted``, put its text layer over it
    (not over a page that has text of its own: search would find everything twice)."""
    import pikepdf

    drawn: list[tuple[Any, int]] = []
    sizes: list[tuple[PageResult, float, float]] = []
    for page, result, wanted in chunk:
        if result.error is not None or result.width <= 0 or result.height <= 0:
            continue
        if result.rotation % 360:
            page.rotate(result.rotation % 360, relative=True)
        if not wanted or not page_text_lines(result):
            continue
        width, height = _upright_size(page)
        drawn.append((page, len(sizes)))
        sizes.append((result, width, height))
    if not drawn:
        return
    layer = stack.enter_context(pikepdf.open(io.BytesIO(_layer_pages(sizes, font))))
    for page, index in drawn:
        formx = pdf.copy_foreign(layer.pages[index].as_form_xobject())
        name = page.add_resource(formx, pikepdf.Name.XObject, prefix="OCR")
        placement = page.calc_form_xobject_placement(formx, name, pikepdf.Rectangle(page.cropbox), allow_expand=True)
        page.contents_add(b"q\n", prepend=True)
        page.contents_add(b"Q\n" + placement, prepend=False)


def _layer_pages(pages: Sequence[tuple[PageResult, float, float]], font: Path) -> bytes:
    """One fpdf2 page of invisible text per entry, ``width`` x ``height`` points, the page's words on it."""
    from fpdf import FPDF
    from fpdf.enums import TextMode

    pdf = FPDF(unit="pt")
    pdf.set_auto_page_break(False)
    pdf.set_creator("paddleocr-vl-service")
    pdf.add_font("ocr", fname=str(font))
    writer = _Writer(pdf, _codepoints(str(font)))
    writer.add_metrics("ocr")
    if _missing_characters(writer.covered, pages):  # loading the CJK font takes a while: only when needed
        fallback = next((path for path in FALLBACK_FONTS if path.is_file()), None)
        if fallback is not None:
            pdf.add_font("ocr-fallback", fname=str(fallback))
            writer.fallback = _codepoints(str(fallback))
            writer.add_metrics("ocr-fallback")
    for result, width, height in pages:
        pdf.add_page(format=(width, height))
        pdf.text_mode = TextMode.INVISIBLE
        scale = (width / result.width, height / result.height)
        for line in page_text_lines(result):
            writer.line(line, scale)
    return bytes(pdf.output())


def _missing_characters(covered: frozenset[int], pages: Sequence[tuple[PageResult, float, float]]) -> bool:
    """Whether the pages' text has characters the font (``covered`` code points) has no glyph for."""
    return any(
        ord(char) not in covered and not char.isspace()
        for result, _, _ in pages
        for line in page_text_lines(result)
        for word in line.words
        for char in word.text
    )


@functools.lru_cache(maxsize=4)
def _codepoints(font: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(font, lazy=True) as loaded:
        return frozenset(loaded.getBestCmap())


class _Writer:
    """Draws lines of words on the current fpdf2 page: DejaVu Sans, and the fallback font for the characters it
    lacks (fpdf2's ``text()`` does not switch fonts by itself). Each font is sized so that its ascent + descent
    fill the line's band, on the baseline that puts them there."""

    def __init__(self, pdf: Any, covered: frozenset[int]) -> None:
        self.pdf = pdf
        self.covered = covered
        self.fallback: frozenset[int] = frozenset()
        self.metrics: dict[str, tuple[float, float]] = {}  # family -> (ascent, descent) in ems

    def add_metrics(self, family: str) -> None:
        self.pdf.set_font(family, size=10)
        descriptor = self.pdf.current_font.desc
        self.metrics[family] = (descriptor.ascent / 1000.0, abs(descriptor.descent) / 1000.0)

    def line(self, line: PlacedLine, scale: tuple[float, float]) -> None:
        """One line across its band, each word stretched across its extent, a stretched space between words
        (viewers copy it)."""
        scale_x, scale_y = scale
        band = (line.top * scale_y, line.bottom * scale_y)
        if (band[1] - band[0]) / sum(self.metrics["ocr"]) < MIN_FONT_PT:
            return
        for index, word in enumerate(line.words):
            x0, x1 = word.x0 * scale_x, word.x1 * scale_x
            self.stretched(word.text, x0, x1, band)
            if index + 1 < len(line.words):
                self.stretched(" ", x1, max(x1 + 0.01, line.words[index + 1].x0 * scale_x), band)

    def stretched(self, text: str, x0: float, x1: float, band: tuple[float, float]) -> None:
        if x1 <= x0:
            return
        pdf = self.pdf
        runs = [(family, part, self._placement(family, band)) for family, part in self._runs(text)]
        pdf.set_stretching(100)
        widths = []
        for family, part, (size, _) in runs:
            pdf.set_font(family, size=size)
            widths.append(pdf.get_string_width(part))
        natural = sum(widths)
        if natural <= 0:
            return
        stretch = max(0.01, 100.0 * (x1 - x0) / natural)
        pdf.set_stretching(stretch)
        x = x0
        for (family, part, (size, baseline)), width in zip(runs, widths, strict=True):
            pdf.set_font(family, size=size)
            pdf.text(x, baseline, part)
            x += width * stretch / 100.0

    def _placement(self, family: str, band: tuple[float, float]) -> tuple[float, float]:
        """(size, baseline) of ``family`` filling ``band``."""
        ascent, descent = self.metrics[family]
        size = (band[1] - band[0]) / (ascent + descent)
        return size, band[1] - descent * size

    def _runs(self, text: str) -> list[tuple[str, str]]:
        """``text`` in runs of one font each: the fallback for characters only it has."""
        if not self.fallback or all(ord(char) in self.covered for char in text):
            return [("ocr", text)]
        runs: list[tuple[str, str]] = []
        for char in text:
            code = ord(char)
            family = "ocr-fallback" if code not in self.covered and code in self.fallback else "ocr"
            if runs and runs[-1][0] == family:
                runs[-1] = (family, runs[-1][1] + char)
            else:
                runs.append((family, char))
        return runs
