"""The VLM server's own word on its load: requests running and waiting, from its Prometheus ``/metrics``.

vLLM exports the gauges ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (one series per model
or engine; summed here). ``VL_SERVER_METRICS_URL`` names the endpoint; empty, it is derived from ``VL_SERVER_URL``
(``http://vlm:8000/v1`` -> ``http://vlm:8000/metrics``); ``off``: never asked. :class:`QueueWatcher` reads it
twice a second while requests are in flight and hands each reading to the request slots
(:meth:`~.slots.RequestSlots.observe_queue`), where the limit takes the queue as its signal instead of latency.
Where the endpoint cannot be read (a Model RUN behind a gateway may not expose it: 404, 401, no such gauges,
unreachable), the limit keeps to latency and the endpoint is tried again a minute later.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

log = logging.getLogger("app.engines.paddleocr_vl")

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
_SAMPLE = re.compile(r"^(vllm:num_requests_(?:running|waiting))(?:\{.*\})?[ \t]+(\S+)", re.MULTILINE)
#: Seconds between readings while requests are in flight.
POLL_S = 0.5
#: Seconds before an endpoint that could not be read is tried again.
RETRY_S = 60.0


def metrics_url(setting: str, server_url: str) -> str | None:
    """The endpoint to read: ``setting`` as given, derived from the server's URL when empty, ``None`` for ``off``."""
    value = setting.strip()
    if value.lower() == "off":
        return None
    if value:
        return value
    parts = urlsplit(server_url.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return urlunsplit((parts.scheme, parts.netloc, "/metrics", "", ""))


def parse_queue(text: str) -> tuple[float, float] | None:
    """(running, waiting) summed over the series of the Prometheus text ``text``; ``None`` without both gauges."""
    found: dict[str, float] = {}
    for match in _SAMPLE.finditer(text):
        try:
            found[match[1]] = found.get(match[1], 0.0) + float(match[2])
        except ValueError:
            return None
    if RUNNING not in found or WAITING not in found:
        return None
    return found[RUNNING], found[WAITING]


def label(url: str) -> str:
    """The URL without credentials or query, for logs."""
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class QueueWatcher:
    """Reads the server's queue in a thread (see the module docstring). ``busy()`` says whether requests are in
    flight (idle: no reading); ``observe(running, waiting)`` receives each reading; ``token()`` gives the bearer
    value to send (or ``None``)."""

    def __init__(
        self,
        url: str,
        observe: Callable[[float, float], None],
        busy: Callable[[], bool],
        token: Callable[[], str | None],
        *,
        timeout_s: float = 2.0,
    ) -> None:
        self.url = url
        self._observe = observe
        self._busy = busy
        self._token = token
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.available: bool | None = None  # None: not asked yet

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vlm-queue-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as http:
            self.read_once(http)
            while not self._stop.wait(POLL_S if self.available else RETRY_S):
                if self.available is False or self._busy():
                    self.read_once(http)

    def read_once(self, http: httpx.Client) -> bool:
        """One reading; whether it worked (the first success and the first failure after successes are logged)."""
        token = self._token()
        try:
            response = http.get(self.url, headers={"Authorization": f"Bearer {token}"} if token else {})
            reading = parse_queue(response.text) if response.status_code == 200 else None
            problem = f"HTTP {response.status_code}" if response.status_code != 200 else "no vLLM queue gauges"
        except httpx.HTTPError as exc:
            reading, problem = None, type(exc).__name__
        if reading is None:
            if self.available is not False:
                log.info(
                    "paddleocr-vl: the VLM server's queue cannot be read at %s (%s): latency is the load signal",
                    label(self.url),
                    problem,
                )
            self.available = False
            return False
        if not self.available:
            log.info("paddleocr-vl: the VLM server's queue is read from %s: it is the load signal", label(self.url))
        self.available = True
        self._observe(*reading)
        return True
