"""How many requests the VLM server gets at once: a fixed number, or a limit that adapts to the server.

``VL_MAX_CONCURRENCY=auto`` (:class:`GradientLimit`) follows the gradient idea of Netflix's
concurrency-limits (Gradient2): compare the latency now with the latency the server shows with less load;
while they stay close, more requests at once only add throughput, so the limit grows; when latency rises
past ``tolerance`` times that baseline, requests are queueing inside the server and the limit shrinks in
proportion. A 429, a 503 or a timeout cuts the limit at once (``backoff``).

The baseline is the mean latency measured at light load: when fewer than half of the allowed requests
were in flight, or during a *probe* (after ``probe_every_s`` of the limit holding requests back, it is
halved for the requests that start then, like the probes of TCP BBR). So it follows the workload (bigger
pages are slower whatever the load) without creeping up with the queue the limit itself builds. Between
probes it only falls (gradually). The limit grows only while it is what holds requests back (not to twice the demand,
as Gradient2 allows): requests beyond it wait in the service's fair queue, where a small request is not
stuck behind a large document, rather than in the server's. Until the first sign of queueing the limit
grows by half per window (slow start), so it reaches a large server's capacity within a few rounds.

:class:`RequestSlots` holds the slots: coroutines wait in FIFO order (any thread may release), each
request reports its latency and outcome, and a :class:`PageGate` lets the page scheduler admit a new page
only while the server has room, so waiting pages stay in the scheduler's fair queue.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Literal

from app.engines.paddleocr_vl.status import LATENCY_BUCKETS, ConcurrencyState

Outcome = Literal["ok", "overload", "error"]
Clock = Callable[[], float]


class FixedLimit:
    """``VL_MAX_CONCURRENCY=<n>``: always ``n``."""

    mode: Literal["auto", "fixed"] = "fixed"

    def __init__(self, limit: int) -> None:
        self.maximum = self._limit = max(1, limit)
        self.baseline_s: float | None = None

    @property
    def limit(self) -> int:
        return self._limit

    def record(self, *, rtt_s: float, in_flight: int, outcome: Outcome, started_at: float) -> None:
        """A fixed limit learns nothing."""


class GradientLimit:
    """The adaptive limit (see the module docstring). Not thread-safe: :class:`RequestSlots` serialises calls."""

    mode: Literal["auto", "fixed"] = "auto"

    def __init__(
        self,
        maximum: int,
        *,
        initial: int = 4,
        minimum: int = 1,
        tolerance: float = 1.5,
        smoothing: float = 0.3,
        backoff: float = 0.7,
        probe_every_s: float = 30.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.tolerance = tolerance
        self.smoothing = smoothing
        self.backoff = backoff
        self.probe_every_s = probe_every_s
        self.clock = clock
        self._limit = float(max(self.minimum, min(initial, self.maximum)))
        self.slow_start = True
        self.baseline_s: float | None = None
        self._measured_at = clock()
        self._last_cut = -math.inf
        self._probe_from: float | None = None  # requests started from then on measure the baseline
        self._probe: list[float] = []
        self._window: list[float] = []
        self._window_peak = 0

    @property
    def limit(self) -> int:
        """The number of requests allowed in flight now (half of it while probing)."""
        limit = max(self.minimum, int(self._limit))
        return max(self.minimum, limit // 2) if self._probe_from is not None else limit

    def record(self, *, rtt_s: float, in_flight: int, outcome: Outcome, started_at: float) -> None:
        """One finished request: its latency, how many were in flight when it started (itself included),
        and whether it succeeded, was refused for overload (429, 503, timeout) or failed otherwise."""
        now = self.clock()
        if outcome == "overload":
            self._cut(now)
        elif outcome == "ok":
            if self._probe_from is not None:
                self._probe_sample(rtt_s, started_at, now)
            else:
                self._window.append(rtt_s)
                self._window_peak = max(self._window_peak, in_flight)
                if len(self._window) >= max(4, math.ceil(self._limit / 2)):
                    self._close_window(now)

    def _probe_interval(self) -> float:
        return max(self.probe_every_s, 10 * (self.baseline_s or 0.0))

    def _cut(self, now: float) -> None:
        """Multiplicative decrease, at most once per baseline latency (one round of requests)."""
        if now - self._last_cut < max(1.0, self.baseline_s or 0.0):
            return
        self._last_cut = now
        self._limit = max(float(self.minimum), self._limit * self.backoff)
        self.slow_start = False
        self._probe_from = None
        self._window.clear()
        self._window_peak = 0

    def _probe_sample(self, rtt_s: float, started_at: float, now: float) -> None:
        if started_at < self._probe_from:  # type: ignore[operator]
            return  # started before the probe: it saw the full load
        self._probe.append(rtt_s)
        if len(self._probe) >= max(2, math.ceil(self._limit / 4)):
            self.baseline_s = sum(self._probe) / len(self._probe)
            self._measured_at = now
            self._probe_from = None

    def _close_window(self, now: float) -> None:
        """Update from a window of requests. ``peak`` (the most in flight) says how much the limit mattered:
        under half of it, the latency is the light-load baseline; near it (``binding``), the limit holds
        requests back and may grow; in between it may only shrink (a limit far above the demand would let
        a burst queue inside the server, out of reach of the service's fair queue)."""
        short = sum(self._window) / len(self._window)
        samples, peak = len(self._window), self._window_peak
        self._window.clear()
        self._window_peak = 0
        if self.baseline_s is None or peak < self._limit / 2:
            self.baseline_s = short if self.baseline_s is None else (self.baseline_s + short) / 2
            self._measured_at = now
            return
        allowed = max(self.minimum, int(self._limit))  # what the requests saw (the limit is an integer)
        binding = peak >= min(allowed, max(allowed - 1, 0.9 * allowed))
        if short < self.baseline_s:  # less loaded than the baseline says: lower it (gradually: windows are noisy)
            self.baseline_s += (short - self.baseline_s) * self.smoothing
        gradient = max(0.5, min(1.0, self.tolerance * self.baseline_s / short))
        if gradient < 1.0:  # queueing in the server: shrink in proportion
            self.slow_start = False
            target = self._limit * (1 - self.smoothing + self.smoothing * gradient)
        elif binding:  # latency holds: grow (by half per window in slow start, else by a queue's worth)
            target = self._limit + (samples if self.slow_start else self.smoothing * math.sqrt(self._limit))
        else:
            target = self._limit
        self._limit = max(float(self.minimum), min(float(self.maximum), target))
        if not binding and short <= self.baseline_s * (1 + self.tolerance) / 2:
            self._measured_at = now  # nothing held back, latency near the baseline: nothing to re-measure
        elif binding and now - self._measured_at >= self._probe_interval():
            self._probe_from, self._probe = now, []  # held back for a while: re-measure the baseline


Limit = FixedLimit | GradientLimit


class RequestSlots:
    """Slots for VLM requests under a limit; thread-safe, waiting is async (FIFO).

    Use ``started = await slots.acquire()`` ... ``slots.release(started, rtt_s, outcome)``.
    """

    def __init__(self, limit: Limit, clock: Clock = time.monotonic) -> None:
        self.policy = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._listeners: list[Callable[[], None]] = []
        self._counts: dict[str, int] = {"ok": 0, "overload": 0, "error": 0}
        self._buckets = [0] * len(LATENCY_BUCKETS)
        self._latency_sum = 0.0
        self._recent: deque[float] = deque(maxlen=32)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def on_room(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from any thread, without locks held) whenever a request finishes."""
        self._listeners.append(listener)

    async def acquire(self) -> tuple[float, int]:
        """Wait for a slot; returns when the request started and how many were in flight then."""
        with self._lock:
            if not self._waiters and self._in_flight < self.policy.limit:
                self._in_flight += 1
                return self.clock(), self._in_flight
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove((loop, future))
                except ValueError:  # a slot was already handed over: give it back
                    self._in_flight -= 1
                    self._wake_locked()
            raise
        return self.clock(), self._in_flight

    def release(self, started: tuple[float, int], rtt_s: float, outcome: Outcome) -> None:
        """Free the slot of a finished request and learn from it."""
        with self._lock:
            self._in_flight -= 1
            self._counts[outcome] += 1
            if outcome == "ok":
                self._latency_sum += rtt_s
                index = bisect_left(LATENCY_BUCKETS, rtt_s)
                for i in range(index, len(self._buckets)):
                    self._buckets[i] += 1
                self._recent.append(rtt_s)
            self.policy.record(rtt_s=rtt_s, in_flight=started[1], outcome=outcome, started_at=started[0])
            self._wake_locked()
        self.notify_room()

    def notify_room(self) -> None:
        """Tell the listeners there may be room (call without holding any lock)."""
        for listener in self._listeners:
            listener()

    def _wake_locked(self) -> None:
        while self._waiters and self._in_flight < self.policy.limit:
            loop, future = self._waiters.popleft()
            self._in_flight += 1
            loop.call_soon_threadsafe(_resolve, future)

    def state(self) -> ConcurrencyState:
        with self._lock:
            recent = list(self._recent)
            return ConcurrencyState(
                mode=self.policy.mode,
                limit=self.policy.limit,
                maximum=self.policy.maximum,
                in_flight=self._in_flight,
                waiting=len(self._waiters),
                latency_s=round(sum(recent) / len(recent), 3) if recent else None,
                baseline_s=None if self.policy.baseline_s is None else round(self.policy.baseline_s, 3),
                requests=dict(self._counts),
                latency_buckets=tuple(self._buckets),
                latency_sum_s=self._latency_sum,
            )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PageGate:
    """Admission of pages to the pipeline: a page enters while fewer pages than the request limit are in
    and no request waits for a slot (with layout detection a page sends one request per block)."""

    def __init__(self, slots: RequestSlots) -> None:
        self.slots = slots
        self._lock = threading.Lock()
        self.pages = 0

    def try_enter(self) -> bool:
        with self._lock:
            if self.pages >= self.slots.policy.limit or self.slots.waiting:
                return False
            self.pages += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.pages -= 1
        self.slots.notify_room()

    def on_room(self, listener: Callable[[], None]) -> None:
        """``listener`` is called whenever a page may enter now (a page or a request finished)."""
        self.slots.on_room(listener)
