"""A stand-in for the PaddleOCR-VL model server: the OpenAI-compatible HTTP API that vLLM serves.

It speaks the real protocol (``GET /v1/models``, ``POST /v1/chat/completions`` with the page as a
``data:image/...;base64`` URI and the task prompt, ``Authorization: Bearer``), decodes the image, and
answers with the text it *reads* from it with the CPU engine (PP-OCR), so what comes back through
the pipeline depends on what was uploaded. Only the GPU model is replaced; everything between the
service and the server is real.

Auth: ``api_key`` (one static key), or ``authorize`` (a check of the bearer token, e.g. "issued by the IAM
stand-in and not expired": :meth:`tests.support.cloud.IamState.valid`); 401 otherwise, counted in ``rejected``.

Knobs: ``delay_s`` (answer late; with ``delay_from_pixels``, only images of at least that many pixels, so that a
service's small warm-up page is answered at once while its pages wait), ``fail_status`` (answer every completion with
that HTTP error), ``faults`` (what the next completions meet, one each: an HTTP status such as 502, 503 or 504, or
``"reset"``: the connection is closed without an answer), ``stop()`` / ``start()`` (the port refuses connections, then
serves again on the same port), ``metrics`` (serve vLLM's Prometheus ``GET /metrics`` with ``vllm:num_requests_running``
and ``vllm:num_requests_waiting``; off, it answers 404 as a gateway would), and for benchmarks ``reply`` (a fixed answer
instead of reading the image: no CPU spent on OCR) and ``capacity`` (at most that many completions at once; the rest
wait, like a batching server's slots).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from app.engines.pp_ocr import PpOcrEngine
from app.results import reading_order
from app.settings import Settings
from tests.support.http_source import QuietHTTPServer
from tests.support.server import free_port

_ENGINE_LOCK = threading.Lock()
_ENGINES: list[PpOcrEngine] = []


def reader() -> PpOcrEngine:
    """One CPU engine per test process, loaded on first use."""
    with _ENGINE_LOCK:
        if not _ENGINES:
            engine = PpOcrEngine(parallel=2, threads=1)
            engine.load()
            _ENGINES.append(engine)
        return _ENGINES[0]


def read_text(image: Image.Image) -> str:
    """The text in ``image``: one line per band of words, top to bottom."""
    bands = reading_order(reader().recognize([image], ("en",))[0].blocks)
    return "\n".join(" ".join(block.text for block in band) for band in bands)


class _Server(QuietHTTPServer):
    """A listen backlog like a real server's (socketserver's default of 5 refuses bursts of connections); a client
    dropping its connection prints no traceback (:class:`QuietHTTPServer`)."""

    request_queue_size = 1024


class VlmStandin:
    """The stand-in server on ``127.0.0.1:<port>``; ``url`` is the OpenAI base URL (``.../v1``)."""

    def __init__(
        self,
        model_id: str = "PaddleOCR-VL-0.9B",
        api_key: str | None = None,
        *,
        reply: str | None = None,
        capacity: int | None = None,
        authorize: Callable[[str], bool] | None = None,
        metrics: bool = False,
        keep_images: bool = False,
    ) -> None:
        self.model_id = model_id
        self.api_key = api_key
        self.authorize = authorize
        self.rejected = 0  # requests answered 401
        self.reply = reply
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.delay_s = 0.0
        self.delay_from_pixels = 0
        self.fail_status: int | None = None
        self.requests: list[dict[str, Any]] = []  # what each completion request carried (no image bytes)
        self.keep_images = keep_images  # each request's decoded image too, under "image"
        self.faults: deque[int | str] = deque()
        self.metrics = metrics
        self.in_flight = 0  # completions being worked on (at most ``capacity``)
        self.peak_in_flight = 0
        self.waiting = 0  # completions waiting for one of the ``capacity`` slots
        self.peak_waiting = 0
        self._lock = threading.Lock()
        self._release = threading.Event()  # set by stop(): delayed answers give up at once
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> VlmStandin:
        if self.reply is None:
            reader()  # load the CPU engine before the first request arrives
        self._release.clear()
        server = _Server(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = False  # stop() joins the handlers: none is left reading at exit
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Refuse connections from now on; open (keep-alive) connections are closed, handlers joined."""
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    @property
    def running(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Back to a healthy, running server with no knobs set and no requests recorded."""
        self.delay_s = 0.0
        self.delay_from_pixels = 0
        self.fail_status = None
        self.faults.clear()
        self.peak_in_flight = 0
        if not self.running:
            self.start()
        self.requests.clear()

    def __enter__(self) -> VlmStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- protocol ------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with standin._lock:
                    standin._connections.add(self.connection)

            def finish(self) -> None:
                with standin._lock:
                    standin._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its deadline passed)

            def _error(self, status: int, message: str, kind: str) -> None:
                self._send(*failure(status, message, kind))

            def _authorised(self) -> bool:
                header = self.headers.get("Authorization") or ""
                token = header[7:] if header[:7].lower() == "bearer " else ""
                if standin.authorize is not None:
                    allowed = standin.authorize(token)
                else:
                    allowed = standin.api_key is None or token == standin.api_key
                if allowed:
                    return True
                with standin._lock:
                    standin.rejected += 1
                self._error(401, "invalid API key", "AuthenticationError")
                return False

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/metrics" and standin.metrics:
                    return self._metrics()
                if self.path.rstrip("/") != "/v1/models":
                    return self._error(404, f"no route {self.path}", "NotFoundError")
                if self._authorised():
                    model = {"id": standin.model_id, "object": "model", "created": 0, "owned_by": "standin"}
                    self._send(200, {"object": "list", "data": [model]})
                return None

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._error(404, f"no route {self.path}", "NotFoundError")
                if not self._authorised():
                    return None
                with standin._lock:
                    fault = standin.faults.popleft() if standin.faults else None
                if fault == "reset":
                    return self._reset()
                if fault is not None:
                    return self._error(int(fault), "stand-in fault", "ServiceUnavailableError")
                with standin._lock:
                    standin.waiting += 1
                    standin.peak_waiting = max(standin.peak_waiting, standin.waiting)
                with standin._slots or contextlib.nullcontext():
                    with standin._lock:
                        standin.waiting -= 1
                        standin.in_flight += 1
                        standin.peak_in_flight = max(standin.peak_in_flight, standin.in_flight)
                    try:
                        answer = self._complete(raw)
                    finally:  # done before the answer is written, as a server counts a request finished once generated
                        with standin._lock:
                            standin.in_flight -= 1
                if answer is not None:
                    self._send(*answer)
                return None

            def _reset(self) -> None:
                """Close the connection at once with a TCP reset, no answer (a crashed or restarted server)."""
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.close()

            def _metrics(self) -> None:
                with standin._lock:
                    running, waiting = standin.in_flight, standin.waiting
                body = (
                    "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
                    "# TYPE vllm:num_requests_running gauge\n"
                    f'vllm:num_requests_running{{model_name="{standin.model_id}"}} {float(running)}\n'
                    "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
                    "# TYPE vllm:num_requests_waiting gauge\n"
                    f'vllm:num_requests_waiting{{model_name="{standin.model_id}"}} {float(waiting)}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _complete(self, raw: bytes) -> tuple[int, dict[str, Any]] | None:
                """The answer to send (status, body), or None to send nothing."""
                try:
                    request = json.loads(raw)
                    prompt, image = parse_chat_request(request, decode=standin.reply is None)
                except (ValueError, KeyError, TypeError) as exc:
                    return failure(400, f"bad request: {exc}", "BadRequestError")
                entry = {"model": request.get("model"), "prompt": prompt, "size": image.size, "time": time.time()}
                entry["options"] = {key: value for key, value in request.items() if key != "messages"}
                if standin.keep_images:
                    entry["image"] = image
                standin.requests.append(entry)
                if request.get("model") != standin.model_id:
                    return failure(404, f"The model `{request.get('model')}` does not exist.", "NotFoundError")
                delayed = standin.delay_s and image.size[0] * image.size[1] >= standin.delay_from_pixels
                if delayed and standin._release.wait(standin.delay_s):
                    return None  # stopped while "thinking": drop the answer
                if standin.fail_status:
                    return failure(standin.fail_status, "stand-in failure", "InternalServerError")
                began = time.monotonic()
                text = standin.reply if standin.reply is not None else read_text(image)
                entry["read_s"] = round(time.monotonic() - began, 2)
                completion = {
                    "id": "chatcmpl-" + uuid.uuid4().hex[:12],
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": standin.model_id,
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": max(1, len(text) // 4), "total_tokens": 1},
                }
                return 200, completion

        return Handler


def failure(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    """An OpenAI-style error answer."""
    return status, {"error": {"message": message, "type": kind, "code": status}}


def parse_chat_request(request: dict[str, Any], decode: bool = True) -> tuple[str, Image.Image]:
    """The text prompt and the decoded image of a chat-completion request with one user message; ``decode`` false
    (a fixed ``reply``: nothing reads the pixels): the image's header only, as a GPU server's CPU would not pay
    for decoding it on the service's cores."""
    content = request["messages"][-1]["content"]
    prompt = next(part["text"] for part in content if part.get("type") == "text")
    url = next(part["image_url"]["url"] for part in content if part.get("type") == "image_url")
    header, _, data = url.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise ValueError(f"expected a base64 image data URI, got {header[:40]!r}")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        if not decode:
            return prompt, image
        image.load()
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"undecodable image: {exc}") from exc
    return prompt, image.convert("RGB")


def engine_settings(standin: VlmStandin, **values: Any) -> Settings:
    """Settings of a paddleocr-vl engine reading through ``standin`` (its model, its key), layout detection off."""
    base: dict[str, Any] = {
        "ocr_engine": "paddleocr-vl",
        "vl_backend": "vllm-server",
        "vl_server_url": standin.url,
        "vl_model_name": standin.model_id,
        "vl_api_key": standin.api_key or "",
        "vl_use_layout_detection": False,
        "vl_request_timeout_s": 30,
    }
    return Settings(**{**base, **values})
