"""PaddleOcrVlEngine with its pipeline in this process: the real pipeline against the stand-in VLM server, without
HTTP in front.

Covers what the service tests do not: several pages in one pipeline call, and loading failures that a
person has to fix (the message must say what).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.cpu_turns import CpuTurns
from app.engines.base import EngineLoadError
from app.engines.paddleocr_vl.engine import PaddleOcrVlEngine
from app.engines.paddleocr_vl.pipeline import vl_recognition_model
from app.settings import Settings
from tests.support.documents import cer, page_lines, render_page
from tests.support.vlm_standin import VlmStandin, engine_settings

pytestmark = pytest.mark.integration

MODEL = "paddleocr-vl-standin"
API_KEY = "sk-engine-test"  # pragma: allowlist secret


@pytest.fixture(scope="module")
def standin() -> Iterator[VlmStandin]:
    with VlmStandin(model_id=MODEL, api_key=API_KEY) as server:
        yield server


def settings(standin: VlmStandin, **values: Any) -> Settings:
    # the pipeline in this process (page processes: test_paddleocr_vl_processes.py)
    return engine_settings(standin, **{"vl_page_processes": 0, **values})


def test_several_pages_in_one_pipeline_call(standin: VlmStandin) -> None:
    engine = PaddleOcrVlEngine(settings(standin))
    try:
        engine.load()
        standin.reset()
        texts = [page_lines(n)[:2] for n in (1, 2, 3)]
        pages = engine.recognize([render_page(lines, size=(900, 200), top=30) for lines in texts], ("en",))
        engine_pipeline = engine._pipeline.paddlex_pipeline
    finally:
        engine.close()
    assert len(pages) == 3 and len(standin.requests) == 3
    # The engine's lock around in-process models (layout on) finds them inside paddlex's wrapper.
    assert "_pipeline" in vars(engine_pipeline)
    for page, lines in zip(pages, texts, strict=True):  # results come back in page order
        [block] = page.blocks
        assert cer("\n".join(lines), block.text) <= 0.05, block.text
        assert page.images == {}


@pytest.mark.parametrize(
    ("values", "fix"),
    [
        (
            {"vl_model_name": "not-served"},
            f"VL_MODEL_NAME=not-served is not served by the VLM server, which offers: {MODEL}",
        ),
        (
            {"vl_api_key": "wrong-key"},  # pragma: allowlist secret
            r"refused our credentials on GET /models \(HTTP 401\): check VL_API_KEY",
        ),
    ],
)
def test_a_server_that_refuses_us_fails_with_the_fix(standin: VlmStandin, values: dict[str, Any], fix: str) -> None:
    """The start-up check (GET /models) fails before the pipeline is built, saying what to set."""
    standin.reset()
    engine = PaddleOcrVlEngine(settings(standin, **values))
    try:
        with pytest.raises(EngineLoadError, match=fix) as failure:
            engine.load()
    finally:
        engine.close()
    assert "wrong-key" not in str(failure.value)
    assert standin.requests == []  # no completion was tried
    status = engine.vlm_status()
    assert status is not None and status.models_offered == ((MODEL,) if "vl_model_name" in values else None)


def test_an_empty_model_name_takes_the_one_the_server_serves() -> None:
    """vLLM serves under the name it was started with (PaddlePaddle/PaddleOCR-VL by default), not the
    pipeline's PaddleOCR-VL-0.9B: with VL_MODEL_NAME empty the engine asks the server and uses its name."""
    with VlmStandin(model_id="PaddlePaddle/PaddleOCR-VL", api_key=API_KEY) as server:
        engine = PaddleOcrVlEngine(settings(server, vl_model_name=""))
        try:
            engine.load()
            page = engine.recognize([render_page(page_lines(1)[:2], size=(900, 200), top=30)], ("en",))[0]
            status = engine.vlm_status()
        finally:
            engine.close()
    assert {r["model"] for r in server.requests} == {"PaddlePaddle/PaddleOCR-VL"}  # warm-up and the page
    assert cer("\n".join(page_lines(1)[:2]), page.blocks[0].text) <= 0.05
    assert status is not None and status.model == "PaddlePaddle/PaddleOCR-VL"
    assert status.models_offered == ("PaddlePaddle/PaddleOCR-VL",) and status.auth.mode == "api_key"
    assert status.concurrency.mode == "auto" and status.concurrency.requests["ok"] == 2


def test_gpu_requested_on_a_cpu_build_fails_with_the_fix(standin: VlmStandin) -> None:
    engine = PaddleOcrVlEngine(settings(standin, ocr_device="gpu:0", vl_use_layout_detection=True))
    with pytest.raises(EngineLoadError, match=r"OCR_DEVICE=gpu:0, but .*(CPU build|no CUDA GPU is visible)"):
        engine.load()


def test_unavailable_pipeline_version_fails_with_the_fix(standin: VlmStandin) -> None:
    engine = PaddleOcrVlEngine(settings(standin, vl_pipeline_version="v1.5"))
    with pytest.raises(EngineLoadError, match=r"VL_PIPELINE_VERSION=v1\.5 needs a newer paddleocr"):
        engine.load()


def test_a_page_gives_its_cpu_turn_back_once_its_request_has_left(
    standin: VlmStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn a page holds while its VLM request is built (app.cpu_turns) is free while the server thinks: the
    next page can be decoded meanwhile. With one turn in all, a second taker gets it long before the answer."""
    import app.engines.paddleocr_vl.engine as engine_module

    turns = CpuTurns(1)
    monkeypatch.setattr(engine_module, "page_preparation", turns)
    engine = PaddleOcrVlEngine(settings(standin))
    try:
        engine.load()
        standin.reset()
        standin.delay_s = 2.0
        page = render_page(page_lines(1)[:2], size=(900, 200), top=30)
        done: list[Any] = []
        worker = threading.Thread(target=lambda: done.append(engine.recognize([page], ("en",))))
        worker.start()
        deadline = time.monotonic() + 10
        while not standin.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert standin.requests, "the request never reached the stand-in"
        began = time.monotonic()
        turns.take().release()
        waited = time.monotonic() - began
        worker.join(15)
    finally:
        standin.delay_s = 0.0
        engine.close()
    assert waited < 1.0, f"the turn came free only after {waited:.2f} s (the answer took 2 s)"
    assert done and len(done[0]) == 1


def test_block_images_encoded_by_the_engine_reach_the_server_as_paddlex_would_send_them() -> None:
    """The engine encodes each block itself (app.engines.paddleocr_vl.block_images) and paddlex builds the rest of
    the request: the same options and prompt as paddlex's own path, the same JPEG pixels, nothing left parked."""
    with VlmStandin(model_id=MODEL, api_key=API_KEY, reply="text", keep_images=True) as server:
        engine = PaddleOcrVlEngine(settings(server))
        try:
            engine.load()
            model = vl_recognition_model(engine._pipeline)
            ours = model._genai_client_process
            assert getattr(ours, "_block_images", None) is engine._block_images, "the engine did not install it"
            page = render_page(page_lines(3), size=(1240, 900), top=40)
            server.reset()
            [by_engine] = engine.recognize([page], ("en",))
            model._genai_client_process = ours.__wrapped__  # paddlex's own encoding, for comparison
            [by_paddlex] = engine.recognize([page], ("en",))
            model._genai_client_process = ours
            waiting = engine._block_images.waiting
        finally:
            engine.close()
    ours_sent, paddlex_sent = server.requests
    assert ours_sent["options"] == paddlex_sent["options"] and ours_sent["options"]["model"] == MODEL
    assert ours_sent["prompt"] == paddlex_sent["prompt"] == "OCR:"
    assert ours_sent["image"].format == paddlex_sent["image"].format == "JPEG"
    mine, theirs = (np.asarray(sent["image"].convert("RGB"), np.int16) for sent in (ours_sent, paddlex_sent))
    assert mine.shape == theirs.shape == (900, 1240, 3)
    assert np.abs(mine - theirs).max() <= 2  # one encoder (libjpeg) with one setting: equal, or off by rounding
    assert by_engine.blocks[0].text == by_paddlex.blocks[0].text == "text"
    assert waiting == 0
