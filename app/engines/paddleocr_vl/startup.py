"""Reaching the VLM server while the engine starts: which model requests will name (``GET /models``), and the wait
between attempts while the server is not up yet, said where ``/health`` shows it (the engine's ``detail``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.engines.base import EngineLoadError
from app.engines.paddleocr_vl.auth import VlmAuthError, VlmCredentials
from app.engines.paddleocr_vl.client import VlmServerNotReady, choose_model, list_models
from app.engines.paddleocr_vl.config import normalise_server_url, server_label
from app.settings import Settings

log = logging.getLogger("app.engines.paddleocr_vl")

#: Seconds between attempts to reach the VLM server at start: 1, 2, 4, 8, 15, 15, ...
RETRY_CAP_S = 15.0


class ServerAtStart:
    """The VLM server as the starting engine reaches it; ``say`` sets what ``/health`` shows, ``stop`` ends a wait."""

    def __init__(
        self, settings: Settings, credentials: VlmCredentials, say: Callable[[str], None], stop: threading.Event
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._say = say
        self._stop = stop
        self.label = server_label(settings.vl_server_url)
        self.offered: tuple[str, ...] | None = None  # what GET /models listed

    def find_model(self) -> str:
        """Ask the server which models it serves (waiting for it); the name requests will carry."""
        url = normalise_server_url(self._settings.vl_server_url)
        timeout_s = min(self._settings.vl_request_timeout_s, 30.0)
        attempt = 0
        while True:
            self._say(f"checking the VLM server at {self.label} (GET /models)")
            try:
                offered = list_models(url, self._credentials, timeout_s)
                self.offered = tuple(offered)
                model = choose_model(self._settings.vl_model_name, offered)
                log.info("paddleocr-vl: the VLM server serves %s; requests name %s", ", ".join(offered), model)
                return model
            except VlmAuthError as exc:
                if exc.refused:
                    raise EngineLoadError(str(exc)) from exc
                problem = str(exc)
            except VlmServerNotReady as exc:
                problem = str(exc)
            attempt += 1
            self.wait_to_retry(attempt, problem)

    def wait_to_retry(self, attempt: int, problem: str) -> None:
        """Back off before the next attempt to reach the server (1, 2, 4 ... 15 s), saying so in /health."""
        wait = min(RETRY_CAP_S, 2.0 ** (attempt - 1))
        detail = f"waiting for the VLM server at {self.label}: {problem} (attempt {attempt}, next in {wait:.0f} s)"
        self._say(detail)
        log.warning("paddleocr-vl: %s", detail)
        if self._stop.wait(wait):
            raise EngineLoadError("stopped while waiting for the VLM server")
