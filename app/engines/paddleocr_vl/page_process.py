"""A page process (:mod:`.processes`): ``python -m app.engines.paddleocr_vl.page_process FD``.

It reads the service's settings and the model name from the socket ``FD``, loads its own paddleocr-vl pipeline
(warm-up included) and answers ``ready`` or ``failed``. Then each page that arrives runs in a thread of its own
through the pipeline; the VLM requests take their slots from the service process (:class:`RemoteSlots`). It ends on
``stop`` or when the socket closes (the service has ended), and ignores SIGINT and SIGTERM: the service stops it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from app.engines.errors import EngineError
from app.engines.paddleocr_vl.auth import VlmAuthError, VlmCredentials
from app.engines.paddleocr_vl.channel import Channel
from app.engines.paddleocr_vl.limiter import Outcome
from app.engines.paddleocr_vl.status import TokenState

log = logging.getLogger("app.engines.paddleocr_vl")

#: Seconds a page process waits for the service to answer for a token (an IAM exchange takes up to ~10 s).
TOKEN_WAIT_S = 60.0


class RemoteSlots:
    """The service process's request slots, asked for over the socket; what :class:`~.client.VlmTransport` uses.

    ``acquire`` returns (started, in flight, request id): the first two as :class:`~.slots.RequestSlots` gives them
    (``time.monotonic`` is the same clock in every process), the id to name the slot in ``release``."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[tuple[float, int]]]] = {}
        self.credentials: RemoteCredentials | None = None  # told the bearer value of each grant

    def _send(self, message: tuple[Any, ...]) -> None:
        self._channel.send(message)

    async def acquire(self) -> tuple[float, int, int]:
        rid = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[float, int]] = loop.create_future()
        with self._lock:
            self._waiting[rid] = (loop, future)
        self._send(("acquire", rid))
        try:
            started, in_flight = await future
        except asyncio.CancelledError:
            with self._lock:
                self._waiting.pop(rid, None)
            self._send(("cancel", rid))  # granted meanwhile or not: the service frees it
            raise
        return started, in_flight, rid

    def granted(self, rid: int, started: float, in_flight: int, bearer: str | None = None) -> None:
        """The service's grant (from the reader thread) with the bearer value to send; one no longer awaited is ignored
        (its cancel is on the way)."""
        if self.credentials is not None:
            self.credentials.value = bearer
        with self._lock:
            entry = self._waiting.pop(rid, None)
        if entry is not None:
            loop, future = entry
            loop.call_soon_threadsafe(_resolve, future, (started, in_flight))

    def release(self, started: tuple[float, int, int], rtt_s: float, outcome: Outcome) -> None:
        self._send(("release", started[2], rtt_s, outcome))

    def count_retry(self) -> None:
        self._send(("retry",))


class RemoteCredentials(VlmCredentials):
    """The service process's credential: the bearer value to send comes with each slot's grant; a new one (none
    cached, or after a 401) is asked of the service, which exchanges it with IAM once for every process."""

    def __init__(self, channel: Channel, mode: str, refreshable: bool) -> None:
        self.mode = mode
        self.refreshable = refreshable
        self.value: str | None = None
        self._channel = channel
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._answers: dict[int, tuple[threading.Event, list[tuple[Any, ...]]]] = {}

    def cached(self) -> str | None:
        return self.value

    def token(self) -> str | None:
        return self._ask(False, None)

    def renew_after_rejection(self, rejected: str | None) -> str | None:
        return self._ask(True, rejected)

    def _ask(self, renew: bool, rejected: str | None) -> str | None:
        query = next(self._ids)
        done: tuple[threading.Event, list[tuple[Any, ...]]] = (threading.Event(), [])
        with self._lock:
            self._answers[query] = done
        self._channel.send(("token", query, renew, rejected))
        if not done[0].wait(TOKEN_WAIT_S):
            with self._lock:
                self._answers.pop(query, None)
            raise VlmAuthError("the service process did not answer for a token", refused=False)
        value, error, refused = done[1][0]
        if error is not None:
            raise VlmAuthError(str(error), refused=bool(refused))
        self.value = None if value is None else str(value)
        return self.value

    def answered(self, query: int, value: str | None, error: str | None, refused: bool) -> None:
        with self._lock:
            done = self._answers.pop(query, None)
        if done is not None:
            done[1].append((value, error, refused))
            done[0].set()

    def state(self) -> TokenState:
        return TokenState(mode=self.mode)  # type: ignore[arg-type]  # the service's mode, one of TokenState's


def _resolve(future: asyncio.Future[tuple[float, int]], value: tuple[float, int]) -> None:
    if not future.done():
        future.set_result(value)


class PageProcessMain:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.slots = RemoteSlots(channel)
        self.engine: Any = None
        self.credentials: RemoteCredentials | None = None
        self.loaded = threading.Event()
        self.pool: ThreadPoolExecutor | None = None

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            self.channel.send(message)
        except OSError:
            os._exit(0)  # the service has gone

    def run(self) -> None:
        _, settings, model, index, mode, refreshable = self.channel.receive()
        self.credentials = RemoteCredentials(self.channel, mode, refreshable)
        self.slots.credentials = self.credentials
        from app.logging_setup import configure_logging

        configure_logging(settings.log_level, settings.log_format)
        threading.Thread(target=self.read, name="page-process-reader", daemon=True).start()
        from app.engines.paddleocr_vl.config import request_limit
        from app.engines.paddleocr_vl.engine import PaddleOcrVlEngine

        own = settings.model_copy(update={"vl_page_processes": 0, "vl_limit_sync_s": 0, "vl_server_metrics_url": "off"})
        self.engine = PaddleOcrVlEngine(own, slots=self.slots, credentials=self.credentials, model=model)
        try:
            self.engine.load()
        except Exception as exc:  # told to the service, which fails the engine with it
            message = str(exc) if exc.args else type(exc).__name__
            self.send(("failed", message))
            os._exit(1)
        from app.heap import freeze_loaded

        freeze_loaded()  # its own paddle and paddlex out of the collector's walks, as in the service (app.heap)
        self.pool = ThreadPoolExecutor(request_limit(own).maximum + 4, thread_name_prefix=f"page-{index}")
        self.loaded.set()
        self.send(("ready", {"device": self.engine.device}))
        threading.Event().wait()  # the reader thread ends the process

    def read(self) -> None:
        try:
            while True:
                message = self.channel.receive()
                kind = message[0]
                if kind == "grant":
                    self.slots.granted(*message[1:])
                elif kind == "token":
                    assert self.credentials is not None
                    self.credentials.answered(*message[1:])
                elif kind == "page":
                    _, page_id, shapes = message
                    arrays = [self.channel.receive_array(tuple(shape)) for shape in shapes]
                    self.loaded.wait()
                    assert self.pool is not None
                    self.pool.submit(self.recognise, page_id, arrays)
                    del arrays  # not kept here until the next page: the pool holds them while they are read
                elif kind == "stop":
                    break
        except (EOFError, OSError):
            pass
        logging.shutdown()
        os._exit(0)

    def recognise(self, page_id: int, arrays: list[np.ndarray]) -> None:
        try:
            pages = self.engine.recognize_arrays(arrays)
        except EngineError as exc:
            self.send(("error", page_id, type(exc).__name__, exc.message, getattr(exc, "status_code", None)))
        except Exception as exc:
            log.exception("paddleocr-vl: a page failed in page process %d", os.getpid())
            self.send(("error", page_id, "", f"{type(exc).__name__}: {exc}", None))
        else:
            self.send(("done", page_id, pages))


def main() -> None:
    from app.malloc_arenas import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread starts
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    PageProcessMain(Channel(socket.socket(fileno=int(sys.argv[1])))).run()


if __name__ == "__main__":
    main()
