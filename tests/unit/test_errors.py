"""Engines raise engine errors; one table (app.errors.ENGINE_ERRORS) turns them into client errors."""

from __future__ import annotations

import logging

import pytest

from app.api.errors import http_headers, http_status
from app.engines.errors import EngineError, PageTimeout, VlmFailed, VlmTimeout, VlmUnavailable
from app.errors import ENGINE_ERRORS, Invalid, engine_failure


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (PageTimeout("Tesseract stopped after 300 s"), 504, "page_timeout", None),
        (VlmTimeout("the VLM server did not answer within 180 s"), 504, "vlm_timeout", "30"),
        (VlmUnavailable("the VLM server cannot be reached; retry later"), 502, "vlm_unavailable", "10"),
        (VlmFailed("the VLM server answered HTTP 500", 500), 502, "vlm_error", None),
        (EngineError("the page has no pixels"), 500, "ocr_failed", None),
    ],
)
def test_engine_errors_map_through_the_table(
    error: EngineError, status: int, code: str, retry_after: str | None
) -> None:
    answer = engine_failure(error, [3], "tesseract")
    assert (http_status(answer), answer.code, answer.message) == (status, code, error.message)
    assert http_headers(answer).get("Retry-After") == retry_after


def test_a_subclass_maps_as_its_nearest_listed_base() -> None:
    class SlowPage(PageTimeout):
        pass

    assert SlowPage not in ENGINE_ERRORS
    assert engine_failure(SlowPage("too slow"), [1], "tesseract").code == "page_timeout"


def test_service_errors_pass_and_anything_else_is_a_logged_500(caplog: pytest.LogCaptureFixture) -> None:
    given = Invalid("corrupt_document", "page 2 could not be rendered")
    assert engine_failure(given, [2], "pp-ocr") is given
    with caplog.at_level(logging.ERROR):
        answer = engine_failure(ValueError("secret detail /srv/model.onnx"), [4, 5, 6], "pp-ocr")
    assert (http_status(answer), answer.code) == (500, "ocr_failed")
    assert answer.message == "the OCR engine failed on page 4-6: ValueError"  # the type only, no detail
    assert "pages [4, 5, 6] failed in pp-ocr" in caplog.text
    assert engine_failure(RuntimeError(), [7], "pp-ocr").message == "the OCR engine failed on page 7: RuntimeError"
