"""Hostile clients for tests: raw sockets that stall or hang up, and a probe that times ``/health``
while another request is being handled."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

BOUNDARY = "x-fault-boundary"


class HealthProbe:
    """Polls ``GET /health`` in a thread for as long as the ``with`` block runs; ``slowest_s`` is the
    longest answer time seen (a failed or non-200 answer counts as infinitely slow)."""

    def __init__(self, base_url: str, every_s: float = 0.05) -> None:
        self.base_url = base_url
        self.every_s = every_s
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.times.append(time.perf_counter() - began if ok else float("inf"))
                self._stop.wait(self.every_s)

    @property
    def slowest_s(self) -> float:
        return max(self.times, default=0.0)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(self.every_s * 2)  # at least one probe after the request
        self._stop.set()
        self._thread.join(30)


def multipart(fields: dict[str, str], file: bytes | None = None, filename: str = "doc.png") -> bytes:
    """A multipart/form-data body (boundary :data:`BOUNDARY`) with text ``fields`` and an optional ``file``."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    if file is not None:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + file + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class RawClient:
    """One TCP connection spoken to by hand, so that a test can stop mid-request or hang up."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, method: str, path: str, length: int, content_type: str = "", extra: str = "") -> None:
        """Send a request head announcing a body of ``length`` bytes."""
        kind = f"Content-Type: {content_type}\r\n" if content_type else ""
        self.send(f"{method} {path} HTTP/1.1\r\nHost: test\r\n{kind}Content-Length: {length}\r\n{extra}\r\n".encode())

    def read_all(self) -> bytes:
        """Everything until the server closes the connection (or the timeout passes)."""
        chunks = []
        try:
            while chunk := self.sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)

    def answer(self) -> tuple[int, dict[str, str], Any]:
        """Read one full answer (the server closes after it): status, headers, parsed JSON body."""
        raw = self.read_all()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers = {k.lower(): v for k, v in headers.items()}
        return status, headers, json.loads(body) if body else None

    def closed_by_server(self, within_s: float) -> bool:
        """Whether the server closes the connection within ``within_s`` seconds."""
        self.sock.settimeout(within_s)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True

    def hang_up(self) -> None:
        """Close abruptly (RST), as a client that loses its network would."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def deleted_open_files(pid: int) -> list[str]:
    """Files the process still holds open although they were deleted (space that is not given back)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith("(deleted)"):
            found.append(target)
    return found


def access_lines(log: str, path: str) -> list[str]:
    """The request log lines for ``path``."""
    return [line for line in log.splitlines() if "app.access: request id=" in line and f" {path} " in line]


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):  # no labels
            found: dict[str, str] = {}
        elif line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        else:
            continue
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    seconds = 0.0

    def __enter__(self) -> Timer:
        self._began = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.seconds = time.perf_counter() - self._began
