"""Background initialisation: /health answers at once, OCR is 503 until the engine is ready or failed."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.engines.base import EnginePage
from app.engines.pp_ocr import PpOcrEngine
from app.main import create_app
from app.settings import Settings
from tests.support.documents import ENGLISH_LINES, cer, image_bytes, render_page
from tests.support.faults import metric
from tests.support.server import ThreadServer

pytestmark = pytest.mark.integration


class GatedEngine(PpOcrEngine):
    """The real pp-ocr engine whose loading waits for the test, then loads or fails."""

    def __init__(self, fail_with: str | None = None) -> None:
        super().__init__(parallel=1, threads=1)
        self.gate = threading.Event()
        self.fail_with = fail_with
        self.pages_started = threading.Event()
        self.release_pages = threading.Event()
        self.release_pages.set()

    def load(self) -> None:
        self.gate.wait(60)
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        super().load()

    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        self.pages_started.set()
        self.release_pages.wait(60)
        return super().recognize(images, languages)


def page_png() -> bytes:
    return image_bytes(render_page(ENGLISH_LINES[:2]), "PNG")


def test_initialising_then_ready(tmp_path: Path) -> None:
    engine = GatedEngine()
    app = create_app(Settings(output_dir=tmp_path), engine=engine)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        began = time.perf_counter()
        health = client.get("/health")
        assert time.perf_counter() - began < 0.5
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "starting" and body["paddleocr"] == "initializing"
        assert body["engine"]["state"] == "initializing"
        assert client.get("/ready").status_code == 503
        busy = client.post("/ocr", files={"file": ("a.png", page_png())})
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "engine_initializing"
        assert int(busy.headers["retry-after"]) > 0

        gc.unfreeze()
        engine.gate.set()
        deadline = time.monotonic() + 60
        while client.get("/health").json()["status"] != "healthy":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert gc.get_freeze_count() > 0  # the loaded engine's objects are out of the collector's walks (app.heap)
        metrics = client.get("/metrics").text
        assert metric(metrics, "python_gc_frozen_objects") > 0
        assert metric(metrics, "python_gc_pause_seconds_count", generation="2") >= 1  # the collection before the freeze
        assert metric(metrics, "python_gc_pause_seconds_sum", generation="2") > 0
        assert client.get("/ready").status_code == 200
        done = client.post("/ocr", files={"file": ("a.png", page_png())})
        assert done.status_code == 200
        assert cer("\n".join(ENGLISH_LINES[:2]), done.json()["text"]) <= 0.02


def test_failed_engine_reports_reason(tmp_path: Path) -> None:
    engine = GatedEngine(fail_with="models missing under /models")
    engine.gate.set()
    app = create_app(Settings(output_dir=tmp_path), engine=engine)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        deadline = time.monotonic() + 30
        while (body := client.get("/health").json())["status"] == "starting":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert body["status"] == "unhealthy" and body["paddleocr"] == "failed"
        assert "models missing" in body["engine"]["error"]
        assert client.get("/ready").status_code == 503
        response = client.post("/ocr", files={"file": ("a.png", page_png())})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "engine_failed"
        assert "models missing" in response.json()["error"]["message"]


def test_queue_full_gets_429(tmp_path: Path) -> None:
    engine = GatedEngine()
    engine.gate.set()
    engine.release_pages.clear()  # the first request holds the only worker
    app = create_app(Settings(output_dir=tmp_path, max_queued_jobs=1), engine=engine)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").json()["status"] != "healthy":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        result: dict[str, httpx.Response] = {}
        first = threading.Thread(
            target=lambda: result.setdefault(
                "r", httpx.post(server.url + "/ocr", files={"file": ("a.png", page_png())}, timeout=60)
            )
        )
        first.start()
        assert engine.pages_started.wait(30)
        refused = client.post("/ocr", files={"file": ("b.png", page_png())})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert int(refused.headers["retry-after"]) > 0
        engine.release_pages.set()
        first.join(60)
        assert result["r"].status_code == 200
