"""Pages of a document reach an engine together when it batches (one recognize call per batch)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from PIL import Image

from app.engines.base import EnginePage
from app.engines.pp_ocr import PpOcrEngine
from app.main import create_app
from app.settings import Settings
from tests.support.documents import cer, page_lines, text_pdf
from tests.support.server import ThreadServer


class BatchingEngine(PpOcrEngine):
    """The real pp-ocr engine, declared to take 3 pages per call; records the calls it gets."""

    def __init__(self) -> None:
        super().__init__(parallel=1, threads=1)
        self.calls: list[int] = []
        self._lock = threading.Lock()

    @property
    def batch_size(self) -> int:
        return 3

    def recognize(self, images: Sequence[Image.Image], languages: Sequence[str]) -> list[EnginePage]:
        with self._lock:
            self.calls.append(len(images))
        return super().recognize(images, languages)


def test_native_style_batches(tmp_path: Path) -> None:
    engine = BatchingEngine()
    app = create_app(Settings(output_dir=tmp_path), engine=engine)
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").json()["status"] != "healthy":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        response = client.post("/ocr", files={"file": ("d.pdf", text_pdf(7))}, data={"dpi": "100", "pages": "1-7"})
        assert response.status_code == 200, response.text
        pages = response.json()["pages"]
        assert [p["index"] for p in pages] == list(range(1, 8))
        for page in pages:
            assert cer("\n".join(page_lines(page["index"])), page["text"]) <= 0.02
    assert sorted(engine.calls, reverse=True) == [3, 3, 1]
