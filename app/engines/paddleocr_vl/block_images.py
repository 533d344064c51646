"""Block images encoded by the engine, not by paddlex: one JPEG straight from the BGR block, outside the GIL.

paddlex's VLM client turns each block it sends (the whole page without layout detection) into a JPEG data URI:
a BGR-to-RGB copy, a PIL copy of that, then PIL's JPEG encoder, which holds the interpreter lock: three passes
over a ~6.5 MB A4 page (7.9 CPU ms single-threaded, more where the copies are fresh memory). OpenCV encodes the
same JPEG from the BGR block in one pass with the lock released (5.2 ms): the same encoder settings, the same pixels
after decoding (``scripts/profile_vl.py --encode``).

The seam is paddlex's own: a block image given as an ``http(s)://`` URL is sent as that URL, untouched. So
:meth:`BlockImages.install` wraps the predictor's ``_genai_client_process``: each BGR block is encoded here and
handed to paddlex as a placeholder URL (``http://block-image.invalid/<id>``, a name that never resolves); paddlex
builds its request as always (prompt, sampling, token limit, pixel bounds), and the VLM transport puts the data URI
in place of the placeholder just before the request leaves (:meth:`BlockImages.fill`). A placeholder the transport
does not know fails that request instead of reaching the server. Anything that is not a 3-channel ``uint8``
array goes to paddlex as it came; the backends wrapped are those paddlex sends JPEG to.
"""

from __future__ import annotations

import base64
import functools
import inspect
import itertools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard

import numpy as np

#: Where placeholders point: ``.invalid`` never resolves (RFC 2606).
PLACEHOLDER_PREFIX = "http://block-image.invalid/"
#: Pillow's default JPEG quality, which paddlex's ``img.save(buf, format="JPEG")`` uses (4:2:0 chroma, as OpenCV).
JPEG_QUALITY = 75
#: Backends paddlex sends JPEG data URIs to.
JPEG_BACKENDS = frozenset({"vllm-server", "sglang-server", "fastdeploy-server"})
_PREFIX = PLACEHOLDER_PREFIX.encode()
_PLACEHOLDER = re.compile(re.escape(_PREFIX) + rb"([0-9]+)")


class UnknownBlockImage(RuntimeError):
    """A request names a placeholder that was never handed out, or was already sent."""


def jpeg_data_uri(block: np.ndarray) -> str:
    """A BGR ``uint8`` block as a ``data:image/jpeg;base64,...`` URI (OpenCV releases the GIL while it encodes)."""
    import cv2  # paddlex's dependency: present wherever this engine runs

    ok, encoded = cv2.imencode(".jpg", block, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"OpenCV could not encode a block of shape {block.shape} as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _encodable(image: Any) -> TypeGuard[np.ndarray]:
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


class BlockImages:
    """Data URIs waiting for their request: handed out by :meth:`park`, put in by :meth:`fill` (once each)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[bytes, bytes] = {}
        self._ids = itertools.count(1)

    def park(self, data_uri: str) -> str:
        """The placeholder URL that stands for ``data_uri`` until a request carrying it leaves."""
        key = str(next(self._ids)).encode()
        with self._lock:
            self._waiting[key] = data_uri.encode("ascii")
        return PLACEHOLDER_PREFIX + key.decode()

    def forget(self, placeholders: Sequence[str]) -> None:
        """Drop what was parked for ``placeholders`` and not sent (the call ended, or failed before sending)."""
        with self._lock:
            for url in placeholders:
                self._waiting.pop(url.removeprefix(PLACEHOLDER_PREFIX).encode(), None)

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def fill(self, body: bytes) -> bytes:
        """``body`` with every placeholder replaced by its data URI (each handed out once); unchanged without any.

        Raises :class:`UnknownBlockImage` for a placeholder not parked (or already sent)."""
        if _PREFIX not in body:
            return body

        def data_uri(match: re.Match[bytes]) -> bytes:
            with self._lock:
                uri = self._waiting.pop(match.group(1), None)
            if uri is None:
                raise UnknownBlockImage(f"no block image parked for {match.group(0).decode()}")
            return uri

        return _PLACEHOLDER.sub(data_uri, body)

    def install(self, predictor: Any, backend: str) -> bool:
        """Encode ``predictor``'s blocks here (see the module docstring); False, and paddlex left as it is, where
        the backend is not one paddlex sends JPEG to or the predictor has no ``_genai_client_process(data, ...)``."""
        original = getattr(predictor, "_genai_client_process", None)
        if original is None or backend not in JPEG_BACKENDS:
            return False
        if getattr(original, "_block_images", None) is self:
            return True
        try:
            first = next(iter(inspect.signature(original).parameters))
        except (TypeError, ValueError, StopIteration):
            return False
        if first != "data":
            return False
        predictor._genai_client_process = self._wrap(original)
        return True

    def _wrap(self, original: Callable[..., list[str]]) -> Callable[..., list[str]]:
        @functools.wraps(original)
        def process(data: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[str]:
            parked: list[str] = []
            items = []
            try:
                for item in data:
                    image = item.get("image") if isinstance(item, dict) else None
                    if _encodable(image):
                        url = self.park(jpeg_data_uri(image))
                        parked.append(url)
                        items.append({**item, "image": url})
                    else:
                        items.append(item)
                return original(items, *args, **kwargs)
            finally:
                self.forget(parked)

        process._block_images = self  # type: ignore[attr-defined]
        return process
