"""Every log line that CLOUDRU_DEPLOYMENT_GUIDE.md quotes (its ```log blocks; ``…`` stands for a variable part)
appears in the log of a real start of the service, so that users find what the guide tells them to look for.

The starts, all through ``start.sh`` as in the container, at the same time: the CPU engines with one request
and a SIGTERM; ``paddleocr-vl`` asked for a GPU this machine does not have (paddle is imported, the engine
fails) and a SIGTERM; ``paddleocr-vl`` on the stand-in VLM server; a bad ``LOG_LEVEL``; the server bound to
127.0.0.1 with S3 half configured and a key pasted with its comment. Logs are read as the container would write
them: port 8081, ``OUTPUT_DIR=/app/output``, colour codes removed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.documents import ENGLISH_LINES, image_bytes, render_page
from tests.support.server import ROOT, free_port, wait_for
from tests.support.vlm_standin import VlmStandin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GUIDE = ROOT / "CLOUDRU_DEPLOYMENT_GUIDE.md"
LOG_BLOCK = re.compile(r"^( *)```log\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STANDIN_MODEL = "paddleocr-vl-standin"
STANDIN_KEY = "sk-guide-logs-4e1b"  # pragma: allowlist secret
COMMENTED_KEY = "guide-logs-key-77d0"  # pragma: allowlist secret
#: A key pasted with the comment at the end of its line: the service starts, names API_KEY, never shows the key.
COMMENTED = {"API_KEY": f"{COMMENTED_KEY}  # the service's own key"}


def quoted_lines() -> list[str]:
    """The lines of the guide's ```log blocks."""
    lines = []
    for _, body in LOG_BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        lines += [line.strip() for line in body.splitlines() if line.strip()]
    return lines


def pattern(line: str) -> re.Pattern[str]:
    """``…`` matches any text; everything else literally."""
    return re.compile(".*?".join(re.escape(part) for part in line.split("…")))


@dataclass
class Start:
    """``start.sh`` with ``env`` on a free port; its log normalised to the container's port and folder."""

    name: str
    env: dict[str, str]
    tmp: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output_dir(self) -> Path:
        return self.tmp / f"{self.name}-output"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"{self.name}.log"

    def start(self) -> Start:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDRU_", "S3_", "OCR_", "VL_"))}
        base.pop("HOST", None)  # the image's default, 0.0.0.0, unless a start sets it
        env = {**base, "PORT": str(self.port), "OUTPUT_DIR": str(self.output_dir), **self.env}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def health(self) -> dict[str, object] | None:
        try:
            answer = httpx.get(self.url + "/health", timeout=2)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]

    def wait_status(self, *statuses: str, timeout: float = 240) -> dict[str, object]:
        def settled() -> dict[str, object] | None:
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            health = self.health()
            return health if health and health["status"] in statuses else None

        result: dict[str, object] = wait_for(settled, timeout, f"{self.name}: status {statuses}", interval=0.3)
        return result

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise

    def log(self) -> str:
        text = ANSI.sub("", self.log_path.read_text(errors="replace"))
        return text.replace(f":{self.port}", ":8081").replace(str(self.output_dir), "/app/output")


@dataclass
class Logs:
    """The normalised logs of every start, and what each start ended with."""

    by_start: dict[str, str]
    exit_codes: dict[str, int]

    @property
    def lines(self) -> list[str]:
        return [line for log in self.by_start.values() for line in log.splitlines()]


def page_png() -> bytes:
    return image_bytes(render_page(ENGLISH_LINES[:3], size=(1000, 240), top=30), "PNG")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logs]:
    tmp = tmp_path_factory.mktemp("guide-logs")
    with VlmStandin(model_id=STANDIN_MODEL, api_key=STANDIN_KEY) as standin:
        vlm = {
            "OCR_ENGINE": "paddleocr-vl",
            "VL_BACKEND": "vllm-server",
            "VL_SERVER_URL": standin.url,
            "VL_MODEL_NAME": STANDIN_MODEL,
            "VL_API_KEY": STANDIN_KEY,
            "VL_USE_LAYOUT_DETECTION": "false",
        }
        starts = {
            "cpu": Start("cpu", {"OCR_CONCURRENCY": "1"}, tmp),
            "paddle": Start("paddle", {"OCR_ENGINE": "paddleocr-vl", "OCR_DEVICE": "gpu:0"}, tmp),
            "vlm": Start("vlm", vlm, tmp),
            "bad-level": Start("bad-level", {"LOG_LEVEL": "info"}, tmp),
            "loopback": Start("loopback", {"HOST": "127.0.0.1", "CLOUDRU_S3_BUCKET": "ocr-results", **COMMENTED}, tmp),
        }
        for start in starts.values():
            start.start()

        exit_codes = {}
        assert starts["bad-level"].process is not None
        exit_codes["bad-level"] = starts["bad-level"].process.wait(60)
        starts["loopback"].wait_status("starting", "healthy")
        exit_codes["loopback"] = starts["loopback"].stop()

        cpu = starts["cpu"]
        cpu.wait_status("healthy")
        files = {"file": ("page.png", page_png())}
        answer = httpx.post(cpu.url + "/ocr", files=files, data={"lang": "en"}, timeout=120)
        assert answer.status_code == 200, answer.text
        exit_codes["cpu"] = cpu.stop()

        starts["vlm"].wait_status("healthy")
        exit_codes["vlm"] = starts["vlm"].stop()

        paddle = starts["paddle"]
        paddle.wait_status("unhealthy")
        time.sleep(2.5)  # the engines have settled: the service takes SIGTERM back from paddle within a second
        exit_codes["paddle"] = paddle.stop()
        yield Logs({name: start.log() for name, start in starts.items()}, exit_codes)


def test_every_log_line_the_guide_quotes_is_logged(logs: Logs) -> None:
    quoted = quoted_lines()
    assert len(quoted) >= 25, "the guide's ```log blocks were not found"
    missing = [line for line in quoted if not any(pattern(line).search(logged) for logged in logs.lines)]
    assert missing == [], "quoted in the guide but not logged:\n" + "\n".join(missing)


def test_the_starts_ended_as_the_guide_says(logs: Logs) -> None:
    assert logs.exit_codes["bad-level"] != 0  # a bad value stops the container
    for name in ("cpu", "vlm", "loopback", "paddle"):
        assert logs.exit_codes[name] == 0, f"{name}: exit {logs.exit_codes[name]}\n{logs.by_start[name][-2000:]}"


def test_paddle_does_not_take_the_logs_or_sigterm(logs: Logs) -> None:
    """Once paddle is imported (the GPU engine), INFO lines still appear and SIGTERM still drains."""
    log = logs.by_start["paddle"]
    assert "UserWarning: No ccache found" in log  # paddle was imported
    assert "INFO app.jobs.service: draining: 0 job(s) active" in log
    assert "Finished server process" in log
    assert "FatalError" not in log and "Termination signal" not in log


def test_a_commented_value_is_named_but_never_shown(logs: Logs) -> None:
    log = logs.by_start["loopback"]
    assert "WARNING app: API_KEY: the value goes on with ' #…'" in log
    assert COMMENTED_KEY not in "\n".join(logs.by_start.values())
