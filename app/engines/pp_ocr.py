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
from app.schemas import Block

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
            bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])  # rapidocr wants BGR
            output = instance(bgr)
        finally:
            self._pool.put(instance)
        return EnginePage(blocks=blocks_from_rapidocr(output.boxes, output.txts, output.scores))


def blocks_from_rapidocr(boxes: Any, texts: Any, scores: Any) -> list[Block]:
    """Quadrilaterals + texts + scores (rapidocr's output) -> axis-aligned line blocks (unordered)."""
    if boxes is None or texts is None:
        return []
    blocks = []
    for quad, text, score in zip(boxes, texts, scores, strict=False):
        if not str(text).strip():
            continue
        xs = [float(point[0]) for point in quad]
        ys = [float(point[1]) for point in quad]
        blocks.append(
            Block(
                bbox=[round(min(xs), 1), round(min(ys), 1), round(max(xs), 1), round(max(ys), 1)],
                text=str(text),
                score=round(float(score), 4),
                label="text",
            )
        )
    return blocks


def _warmup_page() -> np.ndarray:
    image = Image.new("RGB", (320, 64), "white")
    ImageDraw.Draw(image).text((8, 20), "warm up 123", fill="black")
    return np.asarray(image)
