"""``start.sh`` as the container runs it: real bash, real server process, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.documents import ENGLISH_LINES, cer, image_bytes, render_page
from tests.support.server import ROOT, ServiceProcess, wait_for

pytestmark = pytest.mark.integration

START_SH = ROOT / "start.sh"
SET_BY_START_SH = (
    "PADDLE_PDX_CACHE_HOME",
    "PADDLEX_HOME",
    "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK",
    "FLAGS_enable_eager_mode",
    "FLAGS_eager_delete_tensor_gb",
    "PADDLE_PDX_LOCAL_FONT_FILE_PATH",
    "OMP_THREAD_LIMIT",
)


def environ_of(pid: int) -> dict[str, str]:
    """The environment of a running process, from /proc."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def expected_cache_home(home: Path) -> str:
    """What start.sh picks: the base image's folder when it exists, else ``$HOME/.paddlex``."""
    return "/home/paddleocr/.paddlex" if Path("/home/paddleocr/.paddlex").is_dir() else f"{home}/.paddlex"


def test_syntax() -> None:
    checked = subprocess.run(["bash", "-n", str(START_SH)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert os.access(START_SH, os.X_OK), "start.sh must be executable (the image's CMD runs it directly)"


def test_environment_health_and_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    output = tmp_path / "nested" / "results"  # does not exist yet
    env = {
        "PYTHON": sys.executable,
        "HOME": str(home),
        "HF_HOME": str(tmp_path / "caller-hf"),  # set by the caller: must be kept
        "FLAGS_use_mkldnn": "1",  # likewise
        "OUTPUT_DIR": str(output),
    }
    server = ServiceProcess(tmp_path, env=env, command=[str(START_SH)])
    for name in SET_BY_START_SH:  # whatever the test runner has: start.sh must set these itself
        server.env.pop(name, None)
    began = time.monotonic()
    server.start()
    try:
        health = server.wait_up(timeout=30)
        took = time.monotonic() - began
        # Interpreter start and imports only: the engine loads in the background.
        assert took < 5, f"/health answered {took:.1f} s after start"
        assert health["status"] in ("starting", "healthy")

        assert server.process is not None
        pid = server.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"app" in cmdline and b"-m" in cmdline, "start.sh must exec the server (same pid, no shell left)"
        environ = environ_of(pid)
        cache_home = expected_cache_home(home)
        assert environ["PADDLE_PDX_CACHE_HOME"] == cache_home
        assert environ["PADDLEX_HOME"] == cache_home
        assert environ["PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK"] == "True"
        assert environ["FLAGS_enable_eager_mode"] == "1"
        assert environ["FLAGS_eager_delete_tensor_gb"] == "0"
        assert environ["HF_HOME"] == str(tmp_path / "caller-hf")
        assert environ["FLAGS_use_mkldnn"] == "1"
        assert environ["OMP_THREAD_LIMIT"] == "1"  # one OpenMP thread per page worker (Tesseract)
        font = environ.get("PADDLE_PDX_LOCAL_FONT_FILE_PATH")
        if Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").is_file():  # installed by make (fonts-dejavu-core)
            assert font and Path(font).is_file()
        assert output.is_dir()
    finally:
        stopped = time.monotonic()
        code = server.stop(signal.SIGTERM, timeout=20)
    assert code == 0, server.log()[-2000:]
    assert time.monotonic() - stopped < 10
    assert "Application shutdown complete" in server.log()


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    """SIGTERM arrives while an upload is still streaming in: that request still gets its answer, then
    the process exits 0."""
    server = ServiceProcess(tmp_path, env={"PYTHON": sys.executable}, command=[str(START_SH)])
    server.start()
    try:
        server.wait_ready()
        assert server.process is not None
        lines = ENGLISH_LINES[:3]
        document = image_bytes(render_page(lines), "PNG")
        boundary = "start-sh-test"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="page.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode() + document[: len(document) // 2]
        tail = document[len(document) // 2 :] + f"\r\n--{boundary}--\r\n".encode()
        half_sent, signalled = threading.Event(), threading.Event()

        def body() -> Iterator[bytes]:
            yield head
            half_sent.set()
            signalled.wait(30)
            yield tail

        answer: dict[str, httpx.Response] = {}

        def post() -> None:
            headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
            answer["r"] = httpx.post(server.url + "/ocr", content=body(), headers=headers, timeout=60)

        client = threading.Thread(target=post)
        client.start()
        assert half_sent.wait(30)
        time.sleep(0.3)  # the request has reached the server and is reading its body
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        signalled.set()
        client.join(60)
        assert answer["r"].status_code == 200, answer["r"].text
        assert cer("\n".join(lines), answer["r"].json()["text"]) <= 0.02
        wait_for(lambda: server.process is not None and server.process.poll() is not None, 30, "exit after SIGTERM")
    finally:
        code = server.stop(timeout=20)
    assert code == 0, server.log()[-2000:]
