"""Pages turned upright (0, 90, 180 or 270 degrees) for the CPU engines, which read only upright text.

Detecting a page's orientation with Tesseract's OSD (``osd.traineddata``, Debian's ``tesseract-ocr-osd``)
costs about as much as reading an English page, so it is not done for every page. The engine reads the
page first; a reading that looks upright (confident, in horizontal lines) is kept at no extra cost.
Otherwise OSD says how the page lies, the page is turned and read again, and the better-looking reading
is kept. Text read upside down comes back as low-confidence garbage, and lines set sideways come back as
boxes taller than wide or as one block per column of lines, so turned pages do not pass as upright
(scripts/bench_engines.py measures both, and that upright pages never pay for OSD).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from app.engines.base import EnginePage

log = logging.getLogger(__name__)

#: A reading whose character-weighted confidence is below this does not count as upright. Upright
#: generated pages (clean, noisy, photographed) read at 0.91-1.00 with both engines; pages upside down
#: at 0.30-0.68 (BENCHMARKS.md, engines section).
UPRIGHT_CONFIDENCE = 0.80
#: Share of the characters in blocks that are not horizontal lines above which a page counts as lying on its side.
SIDEWAYS_SHARE = 0.5
#: Narrowest plausible character of a horizontal line, as a share of the line's height (letters are about
#: 0.4-0.6 of a line box high; ``l`` and ``i`` less, but a line is never only those).
MIN_CHAR_WIDTH = 0.2
#: Pages with fewer characters read are left as they are: too little text to judge, or to turn for.
MIN_CHARS = 12
#: OSD's orientation confidence below which its answer is not acted upon (upright-or-turned pages of
#: ordinary text score 9-30).
MIN_OSD_CONFIDENCE = 2.0
#: Longer sides above this are scaled down for OSD (its time grows with the pixels, not its accuracy).
OSD_MAX_SIDE = 2400

#: Clockwise turns as PIL's (counter-clockwise) transpositions.
_TURNS = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class Reading:
    """How a page's reading looks: characters read, their mean confidence, the share lying sideways."""

    chars: int
    confidence: float
    sideways: float  # share of the characters in blocks that are not horizontal lines (:func:`lies_sideways`)

    @property
    def upright(self) -> bool:
        """Confident and in horizontal lines, or too little text to tell."""
        return self.chars < MIN_CHARS or (self.confidence >= UPRIGHT_CONFIDENCE and self.sideways <= SIDEWAYS_SHARE)

    @property
    def quality(self) -> float:
        """Higher is better: confidence, discounted by the share of sideways text."""
        return self.confidence * (1.0 - self.sideways)


def assess(page: EnginePage) -> Reading:
    """Weigh each block by its characters: its confidence (0 when unknown), and whether it is not a
    horizontal line of text (:func:`lies_sideways`)."""
    chars = confident = sideways = 0.0
    for block in page.blocks:
        count = len(block.text.strip())
        if not count:
            continue
        chars += count
        confident += count * (block.score or 0.0)
        if lies_sideways(block.bbox, count):
            sideways += count
    if not chars:
        return Reading(0, 0.0, 0.0)
    return Reading(int(chars), confident / chars, sideways / chars)


def lies_sideways(bbox: Sequence[float], chars: int) -> bool:
    """Whether a block of ``chars`` characters in ``bbox`` cannot be one horizontal line of them: taller than
    wide, or narrower than :data:`MIN_CHAR_WIDTH` of its height per character (a page lying sideways that
    Tesseract reads as vertical text comes back as one block per column of lines). Blocks of fewer than 3
    characters are left out: a lone ``1`` or ``I`` is naturally tall."""
    x0, y0, x1, y1 = bbox
    width, height = x1 - x0, y1 - y0
    return chars >= 3 and (height > width or width < MIN_CHAR_WIDTH * chars * height)


def turn(image: Image.Image, rotation: int) -> Image.Image:
    """``image`` turned ``rotation`` degrees clockwise (0, 90, 180 or 270)."""
    transpose = _TURNS.get(rotation % 360)
    return image if transpose is None else image.transpose(transpose)


class OrientationDetector:
    """Tesseract's orientation and script detection, one API object per page at a time (thread-safe)."""

    def __init__(self, tessdata: Path) -> None:
        self.tessdata = tessdata
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    @classmethod
    def find(cls, tessdata: Path | None) -> OrientationDetector | None:
        """A detector when ``tessdata`` holds ``osd.traineddata`` and tesserocr is installed, else ``None``."""
        if tessdata is None or not (tessdata / "osd.traineddata").is_file():
            return None
        try:
            import tesserocr  # noqa: F401
        except ImportError:
            return None
        return cls(tessdata)

    @contextlib.contextmanager
    def _api(self) -> Iterator[Any]:
        try:
            api = self._idle.get_nowait()
        except queue.Empty:
            import tesserocr

            api = tesserocr.PyTessBaseAPI(path=str(self.tessdata) + os.sep, lang="osd", psm=tesserocr.PSM.OSD_ONLY)
        try:
            yield api
        finally:
            api.Clear()
            self._idle.put(api)

    def detect(self, image: Image.Image) -> int | None:
        """Degrees (0, 90, 180, 270) to turn ``image`` clockwise to make it upright; ``None`` when OSD finds
        too little text or is not sure (confidence below :data:`MIN_OSD_CONFIDENCE`)."""
        scale = OSD_MAX_SIDE / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
        with self._api() as api:
            api.SetImage(image)
            found = api.DetectOrientationScript()
        if not found or float(found.get("orient_conf", 0.0)) < MIN_OSD_CONFIDENCE:
            return None
        # OSD reports how far the page lies turned clockwise; turning it back is the rest of a full turn.
        return (360 - int(found["orient_deg"])) % 360

    def upright(
        self,
        images: Sequence[Image.Image],
        pages: list[EnginePage],
        read: Callable[[list[Image.Image]], list[EnginePage]],
    ) -> list[EnginePage]:
        """``pages`` (the readings of ``images``), each that did not look upright replaced by the reading of
        the page turned as OSD says (``rotation`` set), when that one looks better. ``read`` reads images."""
        turned: dict[int, tuple[int, Image.Image]] = {}
        readings = [assess(page) for page in pages]
        for index, (image, reading) in enumerate(zip(images, readings, strict=True)):
            if reading.upright:
                continue
            rotation = self.detect(image)
            if rotation:
                turned[index] = (rotation, turn(image, rotation))
        if not turned:
            return pages
        again = read([image for _, image in turned.values()])
        result = list(pages)
        for (index, (rotation, _)), page in zip(turned.items(), again, strict=True):
            if assess(page).quality > readings[index].quality:
                page.rotation = rotation
                result[index] = page
                log.debug("page %d of the batch turned %d degrees clockwise", index + 1, rotation)
        return result

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().End()
            except queue.Empty:
                return
