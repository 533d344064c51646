"""Connections that misbehave, against the real server: clients that hang up mid-request (499, logged at
INFO, no file left), heads and bodies that stall (408 and closed), idle keep-alive connections (closed),
a stop while a request is in flight (503 for new work, the request in flight answered), uploads a
crash left behind (removed at start), an OUTPUT_DIR that cannot be written (no start), and the bytes of
a 500 in the request log."""

from __future__ import annotations

import base64
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.support.documents import ENGLISH_LINES, cer, image_bytes, render_page
from tests.support.faults import (
    BOUNDARY,
    HealthProbe,
    RawClient,
    access_lines,
    deleted_open_files,
    metric,
    multipart,
)
from tests.support.server import ServiceProcess, ThreadServer, wait_for

pytestmark = pytest.mark.integration

TIMEOUTS = {"HEADER_TIMEOUT_S": "1", "BODY_READ_TIMEOUT_S": "1", "KEEP_ALIVE_TIMEOUT_S": "1"}
FAST_ENGINE = {"OCR_CPU_ENGINES": "tesseract"}  # loads in about a second; these tests are not about OCR
PAGE = image_bytes(render_page(ENGLISH_LINES[:3]), "PNG")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceProcess(tmp_path_factory.mktemp("connections"), env={**TIMEOUTS, **FAST_ENGINE}) as process:
        process.wait_ready()
        yield process


def new_log(server: ServiceProcess, since: int) -> str:
    return server.log()[since:]


def wait_for_line(server: ServiceProcess, since: int, path: str) -> str:
    def found() -> str | None:
        lines = access_lines(new_log(server, since), path)
        return lines[-1] if lines else None

    line: str = wait_for(found, 15, f"the request log line of {path}")
    return line


def assert_no_error_logged(text: str) -> None:
    assert " ERROR " not in text and "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("body", ["multipart", "json"])
def test_client_hanging_up_mid_upload_is_499_at_info(server: ServiceProcess, how: str, body: str) -> None:
    assert server.process is not None
    since = len(server.log())
    before = metric(httpx.get(server.url + "/metrics").text, "http_requests_total", route="/ocr", status="499")
    if body == "multipart":
        payload = multipart({"pages": "1"}, PAGE + b"\0" * (4 * 1024 * 1024))
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
    else:
        document = base64.b64encode(PAGE + b"\0" * (4 * 1024 * 1024)).decode()
        payload = f'{{"file": "{document}"}}'.encode()
        content_type = "application/json"
    client = RawClient(server.port)
    client.head("POST", "/ocr", len(payload), content_type)
    client.send(payload[: len(payload) // 3])
    time.sleep(0.3)  # the server is reading the body
    client.hang_up() if how == "reset" else client.close()

    line = wait_for_line(server, since, "/ocr")
    assert " INFO app.access" in line and "status=499" in line and "outcome=client_disconnected" in line, line
    assert_no_error_logged(new_log(server, since))
    after = metric(httpx.get(server.url + "/metrics").text, "http_requests_total", route="/ocr", status="499")
    assert after == before + 1
    assert list((server.output_dir / ".incoming").iterdir()) == []
    wait_for(lambda: not deleted_open_files(server.process.pid), 10, "spooled upload files closed")  # type: ignore[union-attr]
    assert httpx.get(server.url + "/ready").status_code == 200


def test_stalled_head_is_answered_408_and_closed(server: ServiceProcess) -> None:
    with HealthProbe(server.url) as probe:
        silent = RawClient(server.port)  # connects and sends nothing
        partial = RawClient(server.port)
        partial.send(b"POST /ocr HTTP/1.1\r\nHost: test\r\n")  # and then nothing more
        began = time.monotonic()
        status, headers, body = partial.answer()
        assert status == 408 and body["error"]["code"] == "header_timeout"
        assert headers["connection"] == "close"
        assert time.monotonic() - began < 5
        assert silent.closed_by_server(within_s=5)
    assert probe.slowest_s < 1.0, probe.times


def test_slow_loris_head_is_cut_off(server: ServiceProcess) -> None:
    """A byte every half second never completes a head: the timer runs from the first byte, not the last."""
    client = RawClient(server.port)
    began = time.monotonic()
    closed = False
    for byte in b"GET /health HTTP/1.1\r\nX-Padding: " + b"a" * 40:
        try:
            client.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        time.sleep(0.25)
        if time.monotonic() - began > 6:
            break
    assert closed or client.closed_by_server(within_s=2)
    assert time.monotonic() - began < 6


def test_stalled_body_is_answered_408_and_closed(server: ServiceProcess) -> None:
    since = len(server.log())
    payload = multipart({"pages": "1"}, PAGE)
    client = RawClient(server.port)
    client.head("POST", "/ocr", len(payload), f"multipart/form-data; boundary={BOUNDARY}")
    client.send(payload[:200])
    with HealthProbe(server.url) as probe:
        status, headers, body = client.answer()
    assert status == 408 and body["error"]["code"] == "body_timeout", body
    assert headers["connection"] == "close"
    assert probe.slowest_s < 1.0, probe.times
    assert "status=408" in wait_for_line(server, since, "/ocr")
    assert list((server.output_dir / ".incoming").iterdir()) == []


def test_slow_but_steady_body_is_served(server: ServiceProcess) -> None:
    """The body timeout is per wait, not per request: pieces every 0.4 s (under BODY_READ_TIMEOUT_S=1)
    for 2 s make a normal request."""
    payload = multipart({"pages": "1"})  # no document: answered 400 no_file once it is all read
    client = RawClient(server.port)
    client.head(
        "POST", "/ocr", len(payload), f"multipart/form-data; boundary={BOUNDARY}", extra="Connection: close\r\n"
    )
    step = len(payload) // 5 + 1
    for start in range(0, len(payload), step):
        client.send(payload[start : start + step])
        time.sleep(0.4)
    status, _, body = client.answer()
    assert status == 400 and body["error"]["code"] == "no_file"


def test_idle_keep_alive_connection_is_closed(server: ServiceProcess) -> None:
    client = RawClient(server.port)
    client.send(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    client.sock.settimeout(5)
    assert client.sock.recv(65536).startswith(b"HTTP/1.1 200")
    began = time.monotonic()
    assert client.closed_by_server(within_s=5)
    assert time.monotonic() - began < 4  # KEEP_ALIVE_TIMEOUT_S=1


def test_sigterm_answers_new_work_503_while_the_request_in_flight_finishes(tmp_path: Path) -> None:
    env = {**FAST_ENGINE, "SHUTDOWN_GRACE_S": "20"}
    with ServiceProcess(tmp_path, env=env) as server:
        server.wait_ready()
        assert server.process is not None
        payload = multipart({}, PAGE)
        in_flight = RawClient(server.port, timeout=60)
        in_flight.head("POST", "/ocr", len(payload), f"multipart/form-data; boundary={BOUNDARY}")
        in_flight.send(payload[: len(payload) // 2])
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            refused = client.post("/ocr", files={"file": ("page.png", PAGE)})  # a new connection is answered
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "shutting_down" and refused.headers["retry-after"]
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json()["draining"] is True
            assert "the service is stopping" in ready.json()["not_ready"]
            assert client.get("/health").status_code == 200
        in_flight.send(payload[len(payload) // 2 :])
        status, _, body = in_flight.answer()
        assert status == 200, body
        assert cer("\n".join(ENGLISH_LINES[:3]), body["text"]) <= 0.05
        wait_for(lambda: server.process is not None and server.process.poll() is not None, 30, "exit after SIGTERM")
        assert server.process.returncode == 0, server.log()[-2000:]
        assert "stopping: 1 request(s) in flight" in server.log()


def test_uploads_left_by_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    incoming = tmp_path / "output" / ".incoming"
    incoming.mkdir(parents=True)
    for name in ("a" * 32 + ".upload", "b" * 32 + ".upload"):
        (incoming / name).write_bytes(b"%PDF-1.7 half an upload")
    with ServiceProcess(tmp_path, env=FAST_ENGINE) as server:
        server.wait_up()
        assert list(incoming.iterdir()) == []
        assert "removed 2 unfinished upload(s)" in server.log()


def test_an_unwritable_output_dir_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**FAST_ENGINE, "OUTPUT_DIR": str(blocker / "output")}
    server = ServiceProcess(tmp_path, env=env).start()
    assert server.process is not None
    try:
        code = server.process.wait(30)
    finally:
        server.stop()
    assert code == 2
    log = server.log()
    assert f"cannot start: OUTPUT_DIR={blocker / 'output'} is not writable" in log, log
    assert "Uvicorn running" not in log  # no silent move to ./output


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _app_with_a_bug(tmp_path: Path) -> FastAPI:
    app = create_app(Settings(output_dir=tmp_path, ocr_cpu_engines="tesseract", ocr_languages="en"))

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    return app


def test_an_unexpected_error_is_a_json_500_and_its_bytes_are_logged(tmp_path: Path) -> None:
    app = _app_with_a_bug(tmp_path)
    collect = _Collect()
    logging.getLogger("app.access").addHandler(collect)
    try:
        with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.get("/bug")
            assert answer.status_code == 500
            assert answer.json()["error"]["code"] == "internal_error"
            assert client.get("/health").status_code == 200  # the connection and the server live on
    finally:
        logging.getLogger("app.access").removeHandler(collect)
    line = next(line for line in collect.lines if " /bug " in line)
    assert "status=500" in line and f"out={len(answer.content)}" in line, line
