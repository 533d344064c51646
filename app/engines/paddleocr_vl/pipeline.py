"""What the paddleocr-vl engine does with paddlex's pipeline object: guard its in-process models, spare it a
needless copy, feed it pages, warm it up."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import numpy as np
from PIL import Image, ImageDraw


def _inner_pipeline(pipeline: Any) -> Any:
    """paddlex's pipeline inside ``PaddleOCRVL`` (paddlex wraps it for multi-device use)."""
    outer = pipeline.paddlex_pipeline
    return vars(outer).get("_pipeline", outer)


def vl_recognition_model(pipeline: Any) -> Any | None:
    """The predictor that sends blocks to the VLM (``vl_rec_model``), or None where this paddlex has none."""
    return vars(_inner_pipeline(pipeline)).get("vl_rec_model")


def serialise_local_models(pipeline: Any) -> bool:
    """Put one lock around the pipeline's in-process models (layout detection, preprocessing), so pages can
    share the pipeline while their VLM requests stay concurrent; False when this paddlex has none of them."""
    inner = _inner_pipeline(pipeline)
    lock = threading.Lock()
    found = False
    for attribute in ("layout_det_model", "doc_preprocessor_pipeline"):
        model = vars(inner).get(attribute)
        if model is not None:
            setattr(inner, attribute, SerializedCalls(model, lock))
            found = True
    return found


class SerializedCalls:
    """A callable model run by one thread at a time; generators are consumed under the lock.

    Attribute access is forwarded, so the pipeline sees the same object otherwise.
    """

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            result = self._inner(*args, **kwargs)
            return list(result) if inspect.isgenerator(result) else result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def spare_size_copies() -> bool:
    """Make paddlex's ``calc_merged_wh`` (the size of a group of block images, asked once per group of every page)
    read the sizes instead of copying each image twice into a PIL image to ask it (~2 ms of CPU per A4 page, more
    where each copy is fresh memory).
    Applied only where the function is there and the replacement answers the same on a sample; whether applied."""
    try:
        from paddlex.inference.pipelines.paddleocr_vl import uilts
    except ImportError:
        return False
    original = getattr(uilts, "calc_merged_wh", None)
    if original is None or getattr(original, "__name__", "") == _merged_size.__name__:
        return original is not None
    sample = [np.zeros((7, 5, 3), np.uint8), Image.new("RGB", (9, 4)), np.zeros((3, 11, 3), np.uint8)]
    try:
        same = original(sample) == _merged_size(sample)
    except Exception:  # a paddlex whose function takes something else: leave it
        return False
    if same:
        uilts.calc_merged_wh = _merged_size
    return bool(same)


def _merged_size(images: list[Any]) -> tuple[int, int]:
    """(widest, total height) of block images given as arrays (height, width, ...) or PIL images."""
    sizes = [(image.width, image.height) if isinstance(image, Image.Image) else image.shape[1::-1] for image in images]
    return max(int(w) for w, _ in sizes), sum(int(h) for _, h in sizes)


def warmup_page() -> Image.Image:
    """A small page with a line of text."""
    image = Image.new("RGB", (480, 96), "white")
    ImageDraw.Draw(image).text((16, 36), "PaddleOCR-VL warm-up 0123456789", fill="black")
    return image
