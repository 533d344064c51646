"""PaddleOcrVlEngine with page processes (``VL_PAGE_PROCESSES``, :mod:`app.engines.paddleocr_vl.processes`): real
child processes running the real pipeline against the stand-in VLM server, the request limit kept in this process."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.engines.base import EngineLoadError
from app.engines.errors import VlmFailed
from app.engines.paddleocr_vl.engine import PaddleOcrVlEngine
from app.settings import Settings
from scripts.bench import descendants
from tests.support.documents import cer, image_bytes, page_lines, render_page
from tests.support.server import ServiceProcess
from tests.support.vlm_standin import VlmStandin, engine_settings

pytestmark = pytest.mark.integration

MODEL = "paddleocr-vl-standin"
API_KEY = "sk-processes-test"  # pragma: allowlist secret


@pytest.fixture(scope="module")
def standin() -> Iterator[VlmStandin]:
    with VlmStandin(model_id=MODEL, api_key=API_KEY) as server:
        yield server


def settings(standin: VlmStandin, **values: Any) -> Settings:
    base: dict[str, Any] = {"vl_page_processes": 2, "vl_max_concurrency": 3, "vl_limit_sync_s": 0}
    return engine_settings(standin, **{**base, **values})


@pytest.fixture(scope="module")
def engine(standin: VlmStandin) -> Iterator[PaddleOcrVlEngine]:
    engine = PaddleOcrVlEngine(settings(standin))
    try:
        engine.load()
        yield engine
    finally:
        engine.close()


def processes(engine: PaddleOcrVlEngine) -> list[Any]:
    assert engine._processes is not None
    return list(engine._processes.processes)


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def test_pages_are_read_by_both_processes_within_the_one_limit(engine: PaddleOcrVlEngine, standin: VlmStandin) -> None:
    standin.reset()
    standin.delay_s = 2.0  # far longer than preparing a page: three requests are surely at the server at once
    answered = [p.answered for p in processes(engine)]
    texts = [page_lines(n)[:2] for n in range(1, 11)]
    pages = [render_page(lines, size=(900, 200), top=30) for lines in texts]
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda page: engine.recognize([page], ("en",)), pages))
    standin.delay_s = 0.0
    for result, lines in zip(results, texts, strict=True):  # each caller gets its own page back
        [page] = result
        [block] = page.blocks
        assert cer("\n".join(lines), block.text) <= 0.05, block.text
    assert len(standin.requests) == 10
    # VL_MAX_CONCURRENCY=3 holds across the two processes, and is used.
    assert standin.peak_in_flight == 3
    assert [p.answered - before for p, before in zip(processes(engine), answered, strict=True)] != [10, 0]
    assert all(p.answered > before for p, before in zip(processes(engine), answered, strict=True))
    status = engine.vlm_status()
    assert status is not None
    assert status.concurrency.in_flight == 0 and status.concurrency.waiting == 0
    assert status.concurrency.requests["ok"] >= 12  # the ten pages and each process's warm-up
    assert status.auth.mode == "api_key"
    assert all(request["model"] == MODEL for request in standin.requests)


def test_the_server_s_errors_keep_their_kind(engine: PaddleOcrVlEngine, standin: VlmStandin) -> None:
    standin.reset()
    standin.fail_status = 400
    page = render_page(page_lines(1)[:1], size=(900, 120), top=30)
    try:
        with pytest.raises(VlmFailed) as caught:
            engine.recognize([page], ("en",))
    finally:
        standin.reset()
    assert caught.value.status_code == 400
    assert "HTTP 400" in caught.value.message
    assert engine.recognize([page], ("en",))[0].blocks  # and the processes go on


def test_a_killed_process_s_page_is_read_by_another_and_it_is_started_again(
    engine: PaddleOcrVlEngine, standin: VlmStandin
) -> None:
    standin.reset()
    standin.delay_s = 3.0
    page = render_page(page_lines(2)[:2], size=(900, 200), top=30)
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(engine.recognize([page], ("en",))))
    worker.start()
    wait_for(lambda: any(p.pages for p in processes(engine)), 10, "the page reached a process")
    wait_for(lambda: standin.requests, 10, "the page's request reached the stand-in")
    [victim] = [p for p in processes(engine) if p.pages]
    killed_pid = victim.pid
    os.kill(killed_pid, signal.SIGKILL)
    worker.join(30)
    standin.delay_s = 0.0
    assert done, "the page did not come back"
    [read] = done[0]
    assert cer("\n".join(page_lines(2)[:2]), read.blocks[0].text) <= 0.05
    # Sent once more, by the other process (the restarted one's warm-up page may have come too).
    assert [request["size"] for request in standin.requests].count((900, 200)) == 2
    # The killed process is started again; its slot was given back.
    wait_for(lambda: all(p.ready for p in processes(engine)) and len(processes(engine)) == 2, 90, "restarted")
    assert killed_pid not in [p.pid for p in processes(engine)]
    assert engine._processes is not None and engine._processes.restarts == 1
    status = engine.vlm_status()
    assert status is not None
    wait_for(lambda: engine.vlm_status().concurrency.in_flight == 0, 10, "no slot left taken")  # type: ignore[union-attr]


def test_a_process_that_cannot_load_fails_the_engine_with_its_reason(standin: VlmStandin) -> None:
    engine = PaddleOcrVlEngine(settings(standin, vl_pipeline_version="v1.5"))
    try:
        with pytest.raises(EngineLoadError, match=r"v1\.5") as caught:
            engine.load()
        assert engine._processes is not None
        assert all(p.process.poll() is not None for p in engine._processes.processes)
    finally:
        engine.close()
    assert "page process" not in str(caught.value)


def test_closing_the_engine_ends_its_processes(standin: VlmStandin) -> None:
    engine = PaddleOcrVlEngine(settings(standin, vl_page_processes=1))
    engine.load()
    [process] = processes(engine)
    assert process.process.poll() is None
    engine.close()
    assert process.process.poll() is not None


def test_the_service_reads_pages_through_its_page_processes(standin: VlmStandin, tmp_path: Path) -> None:
    """The whole path: HTTP, the job, the page decoded here and read in a page process, the result."""
    standin.reset()
    env = {
        "OCR_ENGINE": "paddleocr-vl",
        "VL_BACKEND": "vllm-server",
        "VL_SERVER_URL": standin.url,
        "VL_API_KEY": API_KEY,
        "VL_USE_LAYOUT_DETECTION": "false",
        "VL_PAGE_PROCESSES": "1",
    }
    lines = page_lines(3)[:3]
    page = image_bytes(render_page(lines, size=(1000, 230), top=30), "PNG")
    with ServiceProcess(tmp_path, env=env) as service:
        health = service.wait_ready(timeout=240)
        assert health["engine"]["vlm"]["page_processes"] == {"count": 1, "ready": 1, "restarts": 0}
        assert service.process is not None
        [child] = descendants(service.process.pid)
        response = httpx.post(service.url + "/ocr", files={"file": ("page.png", page)}, timeout=60)
    assert response.status_code == 200, response.text
    [result] = response.json()["pages"]
    assert cer("\n".join(lines), result["text"]) <= 0.05, result["text"]
    assert child not in descendants(os.getpid())  # the page process ended with the service
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_process_that_cannot_start_again_is_retried_and_pages_wait_for_it(standin: VlmStandin) -> None:
    """Killed while the server refuses completions: its new start fails (the warm-up gets a 400), the next one comes
    after a back-off; a page sent meanwhile waits for a ready process instead of failing."""
    engine = PaddleOcrVlEngine(settings(standin, vl_page_processes=1))
    try:
        engine.load()
        [process] = processes(engine)
        standin.reset()
        standin.fail_status = 400
        os.kill(process.pid, signal.SIGKILL)
        assert engine._processes is not None
        wait_for(lambda: engine._processes.restarts == 1 and processes(engine)[0].failure, 60, "a failed start")
        page = render_page(page_lines(4)[:2], size=(900, 200), top=30)
        done: list[Any] = []
        worker = threading.Thread(target=lambda: done.append(engine.recognize([page], ("en",))))
        worker.start()
        time.sleep(1.0)
        assert not done  # waiting for a ready process
        standin.fail_status = None
        worker.join(60)
        state = engine.vlm_status().processes  # type: ignore[union-attr]
    finally:
        standin.reset()
        engine.close()
    assert done, "the page did not come back"
    assert cer("\n".join(page_lines(4)[:2]), done[0][0].blocks[0].text) <= 0.05
    assert state is not None and (state.count, state.ready, state.restarts) == (1, 1, 2)
