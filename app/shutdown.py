"""Graceful stop: on SIGTERM the service keeps its port open and answers new work with 503 while the
requests already in flight finish, then lets uvicorn stop.

uvicorn on its own closes the listening socket at the first SIGTERM, so a request that arrives during
the stop is refused at the TCP level. Here the first SIGTERM (or SIGINT) starts the service's drain
(new ``POST /ocr``, ``/jobs``, ``/layout-parsing`` get 503 ``shutting_down`` with ``Retry-After``,
``/ready`` answers 503, status polls are still served) and hands the signal on to uvicorn only when
every request that arrived before it has been answered, or after ``SHUTDOWN_GRACE_S``. A second signal
is handed on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from app.signals import SHUTDOWN_SIGNALS, reclaim_after_loading

log = logging.getLogger(__name__)


class Drainable(Protocol):
    def begin_drain(self) -> None: ...


class InFlight:
    """Arrival times (``time.monotonic()``) of the HTTP requests being handled now (used on the event loop)."""

    def __init__(self) -> None:
        self._arrivals: Counter[float] = Counter()
        self._left = asyncio.Event()

    def enter(self, arrived: float) -> None:
        self._arrivals[arrived] += 1

    def leave(self, arrived: float) -> None:
        self._arrivals[arrived] -= 1
        if self._arrivals[arrived] <= 0:
            del self._arrivals[arrived]
        self._left.set()

    def count_before(self, moment: float) -> int:
        """How many requests in flight arrived before ``moment``."""
        return sum(count for arrived, count in self._arrivals.items() if arrived < moment)

    async def wait_done(self, before: float, timeout: float) -> int:
        """Wait until no request that arrived before ``before`` is in flight, at most ``timeout`` seconds;
        returns how many are still in flight."""
        deadline = time.monotonic() + timeout
        while (left := self.count_before(before)) and (remaining := deadline - time.monotonic()) > 0:
            self._left.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._left.wait(), remaining)
        return left


class GracefulStop:
    """Installs the SIGTERM/SIGINT handler described in the module docstring."""

    def __init__(self, service: Drainable, in_flight: InFlight, grace_s: float) -> None:
        self.service = service
        self.in_flight = in_flight
        self.grace_s = grace_s
        self.began: float | None = None  # time.monotonic() of the first signal
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def remaining_s(self) -> float:
        """What is left of ``SHUTDOWN_GRACE_S`` since the first signal (all of it when there was none)."""
        if self.began is None:
            return self.grace_s
        return max(0.0, self.grace_s - (time.monotonic() - self.began))

    def install(self, loading: Callable[[], bool] = lambda: False) -> Callable[[], None]:
        """Take over SIGTERM/SIGINT (main thread only; elsewhere nothing happens). Returns the undo.

        The handlers are installed again once ``loading()`` turns false: an engine library may take the
        signals while it loads (see :mod:`app.signals`)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # embedded servers (tests) do not own the process signals
        self._loop = asyncio.get_running_loop()
        self._previous = {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS}
        for sig in self._previous:
            signal.signal(sig, self._handle)
        reclaim = self._loop.create_task(reclaim_after_loading(loading))

        def restore() -> None:
            reclaim.cancel()
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

        return restore

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        previous = self._previous[sig]
        first = self.began is None
        self.service.begin_drain()
        if first:
            self.began = time.monotonic()
        if not callable(previous):
            if previous == signal.SIG_DFL:
                raise SystemExit(128 + sig)
            return
        if first and self._loop is not None:
            began = self.began
            assert began is not None
            self._loop.call_soon_threadsafe(self._schedule, sig, frame, previous, began)
        else:
            previous(sig, frame)

    def _schedule(self, sig: int, frame: FrameType | None, previous: Callable[..., Any], began: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._stop_when_answered(sig, frame, previous, began))

    async def _stop_when_answered(
        self, sig: int, frame: FrameType | None, previous: Callable[..., Any], began: float
    ) -> None:
        waiting = self.in_flight.count_before(began)
        if waiting:
            log.info("stopping: %d request(s) in flight get up to %.0f s; new work gets 503", waiting, self.grace_s)
            left = await self.in_flight.wait_done(began, self.grace_s)
            if left:
                log.warning("stopping with %d request(s) still in flight after %.0f s", left, self.grace_s)
        previous(sig, frame)
