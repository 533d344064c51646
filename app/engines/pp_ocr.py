"""``pp-ocr``: PP-OCRv6 (detection + recognition) on ONNX Runtime through ``rapidocr``.

The models ship inside the ``rapidocr`` wheel, so nothing is downloaded. They read Chinese, Japanese,
English and most Latin-script languages (:data:`~app.engines.languages.PP_OCR_LANGUAGES`), not
Cyrillic. A ``RapidOCR`` object keeps per-call state, so the engine holds a pool of them: one per page
that may run at the same time.

rapidocr's text-line angle classifier (0 or 180 degrees per line) is off unless asked for
(``PP_OCR_TEXTLINE_ORIENTATION``): on document pages it turns some upright lines upside down and costs
time, and whole pages lying sideways or upside down are turned upright before OCR instead
(:mod:`app.engines.orientation`).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from app.engines.base import EnginePage, OcrEngine
from app.engines.languages import PP_OCR_LANGUAGES
from app.engines.pixels import bgr_array
from app.schemas import Block, Word

log = logging.getLogger(__name__)


class PpOcrEngine(OcrEngine):
    name = "pp-ocr"
    device = "cpu"
    languages = PP_OCR_LANGUAGES
    needs_upright_pages = True
    line_order = "lines"

    def __init__(self, parallel: int = 1, threads: int = 1, textline_orientation: bool = False) -> None:
        self._parallel = max(1, parallel)
        self._threads = max(1, threads)
        self._textline_orientation = textline_orientation
        self._pool: queue.Queue[Any] = queue.Queue()

    @property
    def max_parallel(self) -> int:
        return self._parallel

    def load(self) -> None:
        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        params = {
            "Global.log_level": "warning",
            "Global.use_cls": self._textline_orientation,
            "Global.return_word_box": True,  # word boxes from the recogniser's character positions: cheap
            "EngineConfig.onnxruntime.intra_op_num_threads": self._threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        warmup = _warmup_page()
        for _ in range(self._parallel):
            instance = RapidOCR(params=params)
            instance(warmup)  # loads the ONNX sessions now, not on the first request
            self._pool.put(instance)
        log.info(
            "pp-ocr: %d instance(s), %d thread(s) each, text-line orientation %s",
            self._parallel,
            self._threads,
            "on" if self._textline_orientation else "off",
        )

    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        """Each page on one pooled instance; one model reads every language it knows, so ``languages`` is unused."""
        return [self._read(image) for image in images]

    def _read(self, image: Image.Image) -> EnginePage:
        instance = self._pool.get()
        try:
            bgr = bgr_array(image)  # rapidocr wants BGR
            output = instance(bgr)
        finally:
            self._pool.put(instance)
        words = getattr(output, "word_results", None)
        return EnginePage(blocks=blocks_from_rapidocr(output.boxes, output.txts, output.scores, words))


def blocks_from_rapidocr(boxes: Any, texts: Any, scores: Any, word_results: Any = None) -> list[Block]:
    """Quadrilaterals + texts + scores (rapidocr's output) -> axis-aligned line blocks (unordered), with their
    words where rapidocr gave word boxes (``word_results``, see :func:`line_words`)."""
    if boxes is None or texts is None:
        return []
    words = line_words([str(t) for t in texts], word_results)
    blocks = []
    for quad, text, score, line in zip(boxes, texts, scores, words, strict=False):
        if not str(text).strip():
            continue
        blocks.append(Block(bbox=_box(quad), text=str(text), score=round(float(score), 4), label="text", words=line))
    return blocks


def line_words(texts: Sequence[str], word_results: Any) -> list[list[Word] | None]:
    """Each line's words from rapidocr's ``word_results`` (per line: ``(text, score, quadrilateral)`` tuples).

    rapidocr leaves out the lines it found no word boxes for, so a line takes the next entry only when that
    entry's words spell the line (spaces aside); otherwise the line has no words (None).
    """
    found: list[list[Word] | None] = []
    entries = list(word_results or ())
    position = 0
    for text in texts:
        entry = entries[position] if position < len(entries) else None
        try:
            words = [Word(text=str(w[0]), bbox=_box(w[2]), score=round(float(w[1]), 4)) for w in entry or ()]
        except (TypeError, ValueError, IndexError):
            words = []
        if words and "".join(w.text for w in words).replace(" ", "") == text.replace(" ", ""):
            found.append([w for w in words if w.text.strip()])
            position += 1
        else:
            found.append(None)
    return found


def _box(quad: Any) -> list[float]:
    xs = [float(point[0]) for point in quad]
    ys = [float(point[1]) for point in quad]
    return [round(min(xs), 1), round(min(ys), 1), round(max(xs), 1), round(max(ys), 1)]


def _warmup_page() -> np.ndarray:
    image = Image.new("RGB", (320, 64), "white")
    ImageDraw.Draw(image).text((8, 20), "warm up 123", fill="black")
    return np.asarray(image)
