"""Real servers for tests: the service as a subprocess (``python -m app``) or uvicorn in a thread."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


_LOG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_SUCCEEDED = re.compile(r"app\.jobs\.runner: job (\w+) recognised here \(succeeded\)")
_ANSWERED = re.compile(r"POST /ocr status=200 .* job=(\w+)")


def after_job_ms(log: str) -> list[float]:
    """For each ``POST /ocr`` answered 200: ms from the log line "job <id> recognised here" to the request's access-log
    line (``job=<id>``), i.e. what the service spends after OCR (reading the result, the S3 wait, answering)."""
    gaps: list[float] = []
    finished: dict[str, float] = {}
    for line in log.splitlines():
        stamp = _LOG_STAMP.match(line)
        if not stamp:
            continue
        at = time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")) + int(stamp.group(2)) / 1000
        if succeeded := _SUCCEEDED.search(line):
            finished[succeeded.group(1)] = at
        elif (answered := _ANSWERED.search(line)) and answered.group(1) in finished:
            gaps.append((at - finished.pop(answered.group(1))) * 1000)
    return gaps


def page_log_counts(logs: str, job_id: str) -> dict[int, int]:
    """How many times each page of ``job_id`` was logged as done ("job <id> page <n> done")."""
    counts: dict[int, int] = {}
    for number in re.findall(rf"job {job_id} page (\d+) done", logs):
        counts[int(number)] = counts.get(int(number), 0) + 1
    return counts


STARTED: list[ServiceProcess] = []  # service processes started in this pytest process, in order


class ServiceProcess:
    """``python -m app`` (or another command) on a free port, with its output in a log file.

    S3 settings of the calling environment are not inherited: a test that wants S3 passes them in ``env``.
    Each one started is noted in :data:`STARTED` (the failure report shows the logs of those a failed test started).
    """

    def __init__(self, tmp: Path, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output_dir = tmp / "output"
        self.log_path = tmp / f"server-{self.port}.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDRU_", "S3_"))}
        self.env = {
            **inherited,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "OUTPUT_DIR": str(self.output_dir),
            "OCR_CONCURRENCY": "2",
            # Generated documents are English: requests without lang go to tesseract. Tests of other languages
            # send lang or set OCR_LANGUAGES themselves.
            "OCR_LANGUAGES": "en",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.command = command or [sys.executable, "-m", "app"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        STARTED.append(self)
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(self.url + "/health", timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_up(self, timeout: float = 30) -> dict[str, Any]:
        def up() -> dict[str, Any] | None:
            self._check_alive()
            return self.health()

        result: dict[str, Any] = wait_for(up, timeout, f"{self.url}/health")
        return result

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            self._check_alive()
            health = self.health()
            if health and health["status"] == "unhealthy":
                raise RuntimeError(f"engine failed: {health['engine']['error']}")
            return health if health and health["status"] == "healthy" else None

        result: dict[str, Any] = wait_for(ready, timeout, "engine ready", interval=0.2)
        return result

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadServer:
    """An ASGI app served by a real uvicorn server in a background thread (for injected engines)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 15, "uvicorn start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
