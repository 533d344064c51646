"""Reading a produced PDF back with the tools a person would use: poppler's pdftotext (text and word boxes) and
qpdf's structural check (Debian packages poppler-utils and qpdf)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_WORD = re.compile(r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>', re.DOTALL)
_PAGE = re.compile(r"<page [^>]*>(.*?)</page>", re.DOTALL)


@dataclass(frozen=True)
class FoundWord:
    text: str
    box: tuple[float, float, float, float]  # points, top-left origin, as the page is shown

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def pdf_text(path: Path) -> str:
    """The text pdftotext extracts (pages separated by form feeds)."""
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    ).stdout.decode()


def pdf_words(path: Path) -> list[list[FoundWord]]:
    """Each page's words with their boxes (``pdftotext -bbox``)."""
    out = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, check=True).stdout.decode()
    import html

    return [
        [
            FoundWord(html.unescape(m.group(5)), (float(m[1]), float(m[2]), float(m[3]), float(m[4])))
            for m in _WORD.finditer(page)
        ]
        for page in _PAGE.findall(out)
    ]


def qpdf_check(path: Path) -> subprocess.CompletedProcess[str]:
    """``qpdf --check``: exit code 0 and no warnings for a clean file."""
    return subprocess.run(["qpdf", "--check", str(path)], check=False, capture_output=True, text=True)


def page_count(path: Path) -> int:
    import pikepdf

    with pikepdf.open(path) as pdf:
        return len(pdf.pages)


def json_words(page: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(word, its block) of every word of a result page (JSON)."""
    return [(word, block) for block in page["blocks"] for word in block.get("words") or []]


def check_word_positions(
    result_page: dict[str, Any], found: list[FoundWord], page_size: tuple[float, float]
) -> list[str]:
    """Problems with the placement of the JSON words of one page in the PDF: each word must be found by pdftotext
    with the same text, horizontally inside the word's box (1 pt slack) and vertically inside the band of its line
    (its block), its centre inside the word's box widened to that band. Returns the problems (empty: all placed)."""
    if not result_page["width"] or not result_page["height"]:  # a failed page: no words to place
        return [f"{f.text!r} on a page without words" for f in found]
    scale_x = page_size[0] / result_page["width"]
    scale_y = page_size[1] / result_page["height"]
    unused = list(found)
    problems = []
    for word, block in json_words(result_page):
        x0, y0, x1, y1 = (v * s for v, s in zip(word["bbox"], (scale_x, scale_y, scale_x, scale_y), strict=True))
        top, bottom = block["bbox"][1] * scale_y, block["bbox"][3] * scale_y
        match = next(
            (
                f
                for f in unused
                if f.text == word["text"]
                and x0 - 1 <= f.center[0] <= x1 + 1
                and min(y0, top) - 1 <= f.center[1] <= max(y1, bottom) + 1
            ),
            None,
        )
        if match is None:
            problems.append(f"{word['text']!r} at {[round(v) for v in (x0, y0, x1, y1)]} not found")
            continue
        unused.remove(match)
        bx0, by0, bx1, by1 = match.box
        if bx0 < x0 - 1 or bx1 > x1 + 1 or by0 < min(y0, top) - 1 or by1 > max(y1, bottom) + 1:
            problems.append(f"{word['text']!r}: {match.box} outside {[round(v) for v in (x0, y0, x1, y1)]}")
    return problems


def shown_sizes(path: Path) -> list[tuple[float, float]]:
    """Each page's size in points as viewers show it (CropBox turned by /Rotate): the frame pdftotext's boxes use."""
    import pikepdf

    sizes = []
    with pikepdf.open(path) as pdf:
        for page in pdf.pages:
            box = [float(v) for v in page.cropbox]
            width, height = abs(box[2] - box[0]), abs(box[3] - box[1])
            rotate = int(page.obj.get("/Rotate", 0)) % 360
            sizes.append((height, width) if rotate in (90, 270) else (width, height))
    return sizes
