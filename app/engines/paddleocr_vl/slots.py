"""Slots for VLM requests under a limit (:mod:`.limiter`), and the page gate in front of them.

:class:`RequestSlots` holds the slots: coroutines wait in FIFO order (any thread may release), each
request reports its latency and outcome, the server's metrics report its queue, and what the limit has
learned can be read and restored (:mod:`.fleet`). A :class:`PageGate` lets the page scheduler admit a new
page only while the server has room, so waiting pages stay in the scheduler's fair queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.engines.paddleocr_vl.limiter import Clock, GradientLimit, Learned, Limit, Outcome
from app.engines.paddleocr_vl.status import LATENCY_BUCKETS, ConcurrencyState


class SlotSource(Protocol):
    """What the VLM transport takes its slots from: :class:`RequestSlots`, or in a page process the service's
    (:class:`~.page_process.RemoteSlots`). ``acquire`` returns what ``release`` is given back."""

    async def acquire(self) -> Any: ...

    def release(self, started: Any, rtt_s: float, outcome: Outcome) -> None: ...

    def count_retry(self) -> None: ...


@dataclass(frozen=True)
class Usage:
    """How the slots were used since the last look (:meth:`RequestSlots.usage`)."""

    binding: bool  # a request had to wait for a slot: the limit held requests back
    peak: int  # the most requests in flight at once


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
        self._held_back = False
        self._peak = 0
        #: The page gate turned a page away at its last look (a page waits in the scheduler for room).
        self.pages_held = False
        self.retries = 0  # requests sent again after a transient failure (:mod:`.client`)

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
                self._peak = max(self._peak, self._in_flight)
                return self.clock(), self._in_flight
            self._held_back = True
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
            self.policy.record(
                rtt_s=rtt_s,
                in_flight=started[1],
                outcome=outcome,
                started_at=started[0],
                held_back=self._held_back_now(),
            )
            self._wake_locked()
        self.notify_room()

    def give_back(self) -> None:
        """Free a slot whose request was never sent (its page process gave up waiting, or exited): nothing learned."""
        with self._lock:
            self._in_flight -= 1
            self._wake_locked()
        self.notify_room()

    def observe_queue(self, running: float, waiting: float) -> None:
        """A reading of the server's metrics (requests it runs, requests waiting there)."""
        with self._lock:
            self.policy.observe_queue(running, waiting, self._in_flight, self._held_back_now())
            self._wake_locked()
        self.notify_room()

    def _held_back_now(self) -> bool:
        """Requests wait for a slot, or pages wait at the gate, because of the limit (not because more than it are
        in flight: a limit just lowered by the fleet does not grow again before the excess has finished)."""
        return (bool(self._waiters) or self.pages_held) and self._in_flight <= self.policy.limit

    def note_pages_held(self, held: bool) -> None:
        """The page gate turned a page away (``True``) or let one in (:class:`PageGate`)."""
        self.pages_held = held
        if held:
            self._held_back = True

    def count_retry(self) -> None:
        """A request is sent again after a transient failure (:mod:`.client`)."""
        with self._lock:
            self.retries += 1

    def notify_room(self) -> None:
        """Tell the listeners there may be room (call without holding any lock)."""
        for listener in self._listeners:
            listener()

    def _wake_locked(self) -> None:
        while self._waiters and self._in_flight < self.policy.limit:
            loop, future = self._waiters.popleft()
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            loop.call_soon_threadsafe(_resolve, future)

    # --- what the fleet sees (:mod:`.fleet`) -------------------------------------------------------------
    def usage(self) -> Usage:
        """Whether the limit held requests back, and the peak in flight, since the last call (then reset)."""
        with self._lock:
            used = Usage(binding=self._held_back or bool(self._waiters) or self.pages_held, peak=self._peak)
            self._held_back, self._peak = False, self._in_flight
            return used

    def learned(self) -> Learned | None:
        """What the adaptive limit has learned (``None`` for a fixed one)."""
        with self._lock:
            return self.policy.learned() if isinstance(self.policy, GradientLimit) else None

    def adjust(self, change: Callable[[GradientLimit], None]) -> None:
        """Apply ``change`` to the adaptive limit under the lock (nothing for a fixed one); waiters get the room."""
        with self._lock:
            if not isinstance(self.policy, GradientLimit):
                return
            change(self.policy)
            self._wake_locked()
        self.notify_room()

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
                signal=self.policy.signal,
                retries=self.retries,
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
                self.slots.note_pages_held(True)
                return False
            self.pages += 1
            self.slots.note_pages_held(False)
            return True

    def leave(self) -> None:
        with self._lock:
            self.pages -= 1
        self.slots.notify_room()

    def on_room(self, listener: Callable[[], None]) -> None:
        """``listener`` is called whenever a page may enter now (a page or a request finished)."""
        self.slots.on_room(listener)
