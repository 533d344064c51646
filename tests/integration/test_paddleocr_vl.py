"""The paddleocr-vl engine in the real service: real PaddleOCR-VL pipeline (paddleocr 3.3, CPU), real HTTP
to an OpenAI-compatible VLM server; only the GPU model is a stand-in that reads the received image with
PP-OCR (tests/support/vlm_standin.py). Layout detection is off (its weights are not downloaded here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.cpu_turns import usable_cores
from tests.support.documents import ENGLISH_LINES, cer, image_bytes, page_lines, pdf_bytes, render_page
from tests.support.server import ServiceProcess, wait_for
from tests.support.vlm_standin import VlmStandin

pytestmark = pytest.mark.integration

MODEL = "paddleocr-vl-standin"
API_KEY = "sk-standin-7f3a9c"  # the stand-in refuses requests without it  # pragma: allowlist secret
TIMEOUT_S = 15.0  # well above the stand-in's reading time on a busy 2-core machine


def vl_env(standin: VlmStandin, **extra: str) -> dict[str, str]:
    return {
        "OCR_ENGINE": "paddleocr-vl",
        "VL_BACKEND": "vllm-server",
        "VL_SERVER_URL": standin.url,
        "VL_MODEL_NAME": MODEL,
        "VL_API_KEY": API_KEY,
        "VL_USE_LAYOUT_DETECTION": "false",
        "VL_REQUEST_TIMEOUT_S": str(TIMEOUT_S),
        "VL_MAX_CONCURRENCY": "2",
        **extra,
    }


def small_page(lines: list[str]) -> Image.Image:
    """A short page: the stand-in reads it well within the deadline even on a busy 2-core machine."""
    return render_page(lines, size=(1000, 60 + 56 * len(lines)), top=30)


def post_page(client: httpx.Client, image: Image.Image, **form: str) -> httpx.Response:
    return client.post("/ocr", files={"file": ("page.png", image_bytes(image, "PNG"))}, data=form)


@pytest.fixture(scope="module")
def standin() -> Iterator[VlmStandin]:
    with VlmStandin(model_id=MODEL, api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def vl_service(tmp_path_factory: pytest.TempPathFactory, standin: VlmStandin) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path_factory.mktemp("vl"), env=vl_env(standin)) as server:
        server.wait_ready(timeout=240)
        yield server


@pytest.fixture
def vl(standin: VlmStandin, vl_service: ServiceProcess) -> Iterator[httpx.Client]:
    standin.reset()
    try:
        with httpx.Client(base_url=vl_service.url, timeout=60) as client:
            yield client
    finally:
        standin.reset()


def test_health_names_the_engine_and_why(vl_service: ServiceProcess) -> None:
    health = vl_service.health()
    assert health is not None
    assert health["status"] == "healthy" and health["paddleocr"] == "ready"
    engine = health["engine"]
    assert engine["name"] == "paddleocr-vl" and engine["state"] == "ready"
    assert engine["selection"] == "OCR_ENGINE=paddleocr-vl"
    assert engine["device"] == "cpu; VLM: vllm-server"
    assert engine["detail"] is None and engine["error"] is None
    # VL_PAGE_PROCESSES=auto: one page process per four cores (none below four), at most four
    count = min(4, usable_cores() // 4)
    expected = {"count": count, "ready": count, "restarts": 0} if count else None
    assert engine["vlm"]["page_processes"] == expected


def test_page_text_comes_back_in_blocks_and_markdown(vl: httpx.Client, standin: VlmStandin) -> None:
    lines = ENGLISH_LINES[:4]
    page = small_page(lines)
    response = post_page(vl, page)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["engine"] == "paddleocr-vl"
    result = body["pages"][0]
    assert (result["width"], result["height"]) == page.size
    [block] = result["blocks"]  # layout detection off: the page is one block
    assert block["label"] == "ocr" and block["order"] == 0 and block["score"] is None
    assert block["bbox"] == [0, 0, page.width, page.height]
    expected = "\n".join(lines)
    assert cer(expected, block["text"]) <= 0.03, block["text"]
    assert cer(expected, result["markdown"]) <= 0.03, result["markdown"]
    assert cer(expected, body["text"]) <= 0.03
    # What went over the wire: the real protocol, with our model name, the page image and the OCR prompt.
    assert [(r["model"], r["prompt"], r["size"]) for r in standin.requests] == [(MODEL, "OCR:", page.size)]
    print(f"stand-in read the page in {standin.requests[0]['read_s']} s")


def test_layout_parsing_through_the_vlm(vl: httpx.Client) -> None:
    """The PaddleX-compatible endpoint on the real pipeline: its settings say layout detection was off."""
    import base64
    import io

    lines = ENGLISH_LINES[:3]
    buffer = io.BytesIO()
    small_page(lines).save(buffer, format="PNG")
    payload = {"file": base64.b64encode(buffer.getvalue()).decode(), "fileType": 1, "visualize": False}
    body = vl.post("/layout-parsing", json=payload).json()
    assert body["errorCode"] == 0, body
    pruned = body["result"]["layoutParsingResults"][0]["prunedResult"]
    assert pruned["model_settings"]["use_layout_detection"] is False
    [block] = pruned["parsing_res_list"]
    assert block["block_label"] == "ocr" and cer("\n".join(lines), block["block_content"]) <= 0.03


def test_multipage_pdf(vl: httpx.Client, vl_service: ServiceProcess, standin: VlmStandin) -> None:
    texts = [page_lines(n)[:3] for n in (1, 2, 3)]
    pdf = pdf_bytes([small_page(lines) for lines in texts])
    response = vl.post("/ocr", files={"file": ("three.pdf", pdf)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["index"] for p in body["pages"]] == [1, 2, 3]
    for page, lines in zip(body["pages"], texts, strict=True):
        assert page["error"] is None
        assert cer("\n".join(lines), page["text"]) <= 0.05, page["text"]
    assert body["markdown"].count("\n\n---\n\n") == 2
    assert body["markdown"].index("Page 1 of") < body["markdown"].index("Page 2 of") < body["markdown"].index("Page 3")
    assert len(standin.requests) == 3
    assert (vl_service.output_dir / body["files"]["markdown"]).read_text() == body["markdown"]


def test_transient_faults_are_retried_then_failed_with_the_reason(
    vl: httpx.Client, vl_service: ServiceProcess, standin: VlmStandin
) -> None:
    """A reset connection and a 503 on the way (a restarting server, a gateway): the page still comes back. A server
    that keeps answering 503: the page fails after VL_REQUEST_ATTEMPTS (3) attempts, saying so."""
    standin.faults.extend(["reset", 503])
    response = post_page(vl, small_page(ENGLISH_LINES[:2]))
    assert response.status_code == 200, response.text
    assert not standin.faults and len(standin.requests) == 1
    standin.faults.extend([503, 502, 504])
    failed = post_page(vl, small_page(ENGLISH_LINES[:2]))
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["message"] == "the VLM server answered HTTP 504 (3 attempts)"
    health = vl_service.health()
    assert health is not None and health["engine"]["vlm"]["concurrency"]["retries"] >= 3


def test_server_down_is_a_clean_502_then_recovery(
    vl: httpx.Client, vl_service: ServiceProcess, standin: VlmStandin
) -> None:
    standin.stop()
    began = time.monotonic()
    response = post_page(vl, small_page(ENGLISH_LINES[:2]))
    assert time.monotonic() - began < 10  # two retries after short backoffs, no waiting for a deadline
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "vlm_unavailable"
    assert error["message"] == "the VLM server cannot be reached (3 attempts); retry later"
    assert str(standin.port) not in error["message"]  # the server's address stays internal
    health = vl_service.health()
    assert health is not None and health["status"] == "healthy"

    standin.start()
    again = post_page(vl, small_page(ENGLISH_LINES[:2]))
    assert again.status_code == 200, again.text
    assert cer("\n".join(ENGLISH_LINES[:2]), again.json()["text"]) <= 0.05


def test_slow_server_is_a_504_at_the_deadline(
    vl: httpx.Client, vl_service: ServiceProcess, standin: VlmStandin
) -> None:
    standin.delay_s = 120
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        began = time.monotonic()
        outcome["response"] = post_page(vl, small_page(ENGLISH_LINES[:2]))
        outcome["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=slow_request)
    thread.start()
    wait_for(lambda: standin.in_flight > 0, 30, "the request to reach the stand-in")
    began = time.monotonic()
    health = httpx.get(vl_service.url + "/health", timeout=5)
    assert time.monotonic() - began < 1.0 and health.json()["status"] == "healthy"  # the service stays responsive
    thread.join(60)
    response = outcome["response"]
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "vlm_timeout"
    assert TIMEOUT_S - 0.5 <= outcome["seconds"] <= TIMEOUT_S + 8, outcome["seconds"]

    standin.delay_s = 0
    after = post_page(vl, small_page(ENGLISH_LINES[:2]))
    assert after.status_code == 200, after.text


def test_server_error_is_a_502(vl: httpx.Client, standin: VlmStandin) -> None:
    standin.fail_status = 500
    response = post_page(vl, small_page(ENGLISH_LINES[:2]))
    assert response.status_code == 502, response.text
    assert response.json()["error"] == {"code": "vlm_error", "message": "the VLM server answered HTTP 500"}
    assert len(standin.requests) == 1  # not retried
    standin.fail_status = None
    assert post_page(vl, small_page(ENGLISH_LINES[:2])).status_code == 200


def test_api_key_never_logged(vl_service: ServiceProcess, standin: VlmStandin) -> None:
    assert vl_service.log(), "the service wrote no log"
    assert API_KEY not in vl_service.log()
    assert API_KEY not in httpx.get(vl_service.url + "/health").text


def test_waits_for_the_server_at_start_then_becomes_ready(tmp_path: Path) -> None:
    """OCR_ENGINE=auto with VL_SERVER_URL: the server is down at start, comes up later; the service follows."""
    standin = VlmStandin(model_id=MODEL, api_key=API_KEY)  # not started yet
    env = vl_env(standin, OCR_ENGINE="auto")
    with ServiceProcess(tmp_path, env=env) as server:
        server.wait_up()

        def waiting() -> dict[str, Any] | None:
            health = server.health()
            detail = (health or {}).get("engine", {}).get("detail") or ""
            return health if "waiting for the VLM server" in detail else None

        health = wait_for(waiting, 180, "the engine to report that it waits for the VLM server", interval=0.2)
        assert health["status"] == "starting" and health["engine"]["state"] == "initializing"
        assert health["engine"]["name"] == "paddleocr-vl" and health["engine"]["selection"].startswith("auto: ")
        assert f"127.0.0.1:{standin.port}/v1" in health["engine"]["detail"]
        busy = httpx.post(server.url + "/ocr", files={"file": ("a.png", image_bytes(small_page(["x"]), "PNG"))})
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "engine_initializing"
        assert "waiting for the VLM server" in busy.json()["error"]["message"]

        with standin:
            server.wait_ready(timeout=60)
            response = post_page(httpx.Client(base_url=server.url, timeout=60), small_page(ENGLISH_LINES[:2]))
            assert response.status_code == 200, response.text
            assert cer("\n".join(ENGLISH_LINES[:2]), response.json()["text"]) <= 0.05
