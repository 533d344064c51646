"""Block images encoded by the engine (app.engines.paddleocr_vl.block_images): the JPEG paddlex would send, parked
behind a placeholder until the transport puts it into the request, once."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from app.engines.paddleocr_vl.block_images import PLACEHOLDER_PREFIX, BlockImages, UnknownBlockImage, jpeg_data_uri
from tests.support.documents import page_lines, render_page


def bgr_page() -> np.ndarray:
    rgb = np.asarray(render_page(page_lines(2), size=(700, 300), top=20))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def decoded(data_uri: str) -> np.ndarray:
    header, _, data = data_uri.partition(",")
    assert header == "data:image/jpeg;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), np.int16)


def test_the_jpeg_is_the_one_paddlex_encodes_through_pil() -> None:
    block = bgr_page()
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(block, cv2.COLOR_BGR2RGB)).save(buffer, format="JPEG")  # paddlex's way
    theirs = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert np.abs(decoded(jpeg_data_uri(block)) - decoded(theirs)).max() <= 2


def test_fill_puts_each_parked_image_in_once() -> None:
    images = BlockImages()
    first, second = images.park("data:image/jpeg;base64,AAAA"), images.park("data:image/jpeg;base64,BBBB")
    assert first.startswith(PLACEHOLDER_PREFIX) and first != second
    body = json.dumps({"messages": [{"url": second}, {"url": first}], "model": "m"}).encode()
    filled = json.loads(images.fill(body))
    assert filled == {
        "messages": [{"url": "data:image/jpeg;base64,BBBB"}, {"url": "data:image/jpeg;base64,AAAA"}],
        "model": "m",
    }
    assert images.waiting == 0
    with pytest.raises(UnknownBlockImage, match="no block image parked"):
        images.fill(body)  # sent already


def test_a_body_without_placeholders_is_left_as_it_is() -> None:
    images = BlockImages()
    images.park("data:image/jpeg;base64,AAAA")
    body = b'{"url": "data:image/png;base64,QUJD"}'
    assert images.fill(body) is body and images.waiting == 1


def test_the_wrapper_hands_paddlex_placeholders_for_bgr_blocks_only_and_forgets_them_after() -> None:
    images = BlockImages()
    seen: list[list[dict[str, Any]]] = []

    class Predictor:
        def _genai_client_process(self, data: list[dict[str, Any]], max_new_tokens: int | None = None) -> list[str]:
            seen.append(data)
            assert max_new_tokens == 7
            assert images.waiting == 1  # parked while the call runs
            return ["read"] * len(data)

    predictor = Predictor()
    assert images.install(predictor, "vllm-server")
    assert images.install(predictor, "vllm-server")  # twice: one wrapper
    grey = np.zeros((4, 5), np.uint8)
    data = [{"image": bgr_page(), "query": "OCR:"}, {"image": grey, "query": "OCR:"}]
    assert predictor._genai_client_process(data, max_new_tokens=7) == ["read", "read"]
    [sent] = seen
    assert sent[0]["image"].startswith(PLACEHOLDER_PREFIX) and sent[0]["query"] == "OCR:"
    assert sent[1]["image"] is grey  # not a 3-channel uint8 block: paddlex's own way
    assert isinstance(data[0]["image"], np.ndarray)  # the caller's items are not changed
    assert images.waiting == 0


def test_a_failed_call_leaves_nothing_parked() -> None:
    images = BlockImages()

    class Predictor:
        def _genai_client_process(self, data: list[dict[str, Any]]) -> list[str]:
            raise ConnectionError("server gone")

    predictor = Predictor()
    images.install(predictor, "sglang-server")
    with pytest.raises(ConnectionError):
        predictor._genai_client_process([{"image": bgr_page(), "query": "OCR:"}])
    assert images.waiting == 0


def test_not_installed_where_paddlex_would_not_send_jpeg_or_has_another_method() -> None:
    class Predictor:
        def _genai_client_process(self, data: list[dict[str, Any]]) -> list[str]:
            return []

    class Other:
        def _genai_client_process(self, items: list[dict[str, Any]]) -> list[str]:
            return []

    assert not BlockImages().install(Predictor(), "native")
    assert not BlockImages().install(Other(), "vllm-server")
    assert not BlockImages().install(object(), "vllm-server")
