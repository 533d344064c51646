"""How many requests the VLM server gets at once: a fixed number, or a limit that adapts to the server.

``VL_MAX_CONCURRENCY=auto`` (:class:`GradientLimit`) follows the gradient idea of Netflix's
concurrency-limits (Gradient2): compare the latency now with the latency the server shows with less load;
while they stay close, more requests at once only add throughput, so the limit grows; when latency rises
past ``tolerance`` times that baseline, requests are queueing inside the server and the limit shrinks in
proportion. A 429, a 503, a 502/504 from a gateway, a broken connection or a timeout cuts the limit at once
(``backoff``).

Start and growth (TCP's slow start): a limit with no history starts at :data:`INITIAL_LIMIT` (what a server
that takes 4 requests at once survives: the excess waits in its queue for a round or two, and the first
queued answers stop the growth) and doubles per round trip while it is what holds requests back and the
latency stays flat. The first sign of queueing ends slow start: the limit falls to the level the latency
says the server takes (at most by half), and that level is remembered as ``ssthresh``; above it the limit
grows by a queue's worth per round (``smoothing * sqrt(limit)``). A limit restored from memory
(:meth:`GradientLimit.restore`, a previous run's or the fleet's) starts at that level, in slow start below
the remembered ``ssthresh``.

The baseline is the mean latency measured at light load: when fewer than half of the allowed requests
were in flight, or during a *probe* (after ``probe_every_s`` of the limit holding requests back, it is
halved for the requests that start then, like the probes of TCP BBR). So it follows the workload (bigger
pages are slower whatever the load) without creeping up with the queue the limit itself builds. Probes
start at the same moments of the wall clock in every replica, so replicas sharing a server measure it
together. Between probes the baseline only falls (gradually). The limit grows only while it is what holds
requests back (not to twice the demand, as Gradient2 allows): requests beyond it wait in the service's fair
queue, where a small request is not stuck behind a large document, rather than in the server's.

The server's own word (:meth:`GradientLimit.observe_queue`): where the server's metrics say how many
requests it runs and how many wait (vLLM's ``/metrics``), a waiting queue is the sign of overload and
latency is not (a batching server gets slower per request as it takes more, and still gives more pages per
second): the limit shrinks to our share of what the server runs, and grows while nothing waits.

Several replicas sharing one server (:mod:`.fleet`) move their limits toward a fair share of what the
fleet has learned (:meth:`GradientLimit.rebalance`); ``knee_total`` is what this replica last learned the
whole server takes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["ok", "overload", "error"]
Signal = Literal["latency", "queue"]
Clock = Callable[[], float]

#: Where a limit without history starts (measured: BENCHMARKS.md, the fresh bursts against capacity 4).
INITIAL_LIMIT = 16
#: Seconds a reading of the server's queue counts as current (the metrics are polled every half second).
QUEUE_FRESH_S = 3.0


class FixedLimit:
    """``VL_MAX_CONCURRENCY=<n>``: always ``n``."""

    mode: Literal["auto", "fixed"] = "fixed"
    signal: Signal = "latency"

    def __init__(self, limit: int) -> None:
        self.maximum = self._limit = max(1, limit)
        self.baseline_s: float | None = None

    @property
    def limit(self) -> int:
        return self._limit

    def record(
        self, *, rtt_s: float, in_flight: int, outcome: Outcome, started_at: float, held_back: bool = False
    ) -> None:
        """A fixed limit learns nothing."""

    def observe_queue(self, running: float, waiting: float, in_flight: int, held_back: bool) -> None:
        """A fixed limit learns nothing."""


@dataclass(frozen=True)
class Learned:
    """What an adaptive limit has learned, to be remembered and restored (:mod:`.fleet`)."""

    limit: float
    ssthresh: float | None  # None: never saw the server queue (slow start)
    baseline_s: float | None


class GradientLimit:
    """The adaptive limit (see the module docstring). Not thread-safe: :class:`~.slots.RequestSlots` serialises
    calls."""

    mode: Literal["auto", "fixed"] = "auto"

    def __init__(
        self,
        maximum: int,
        *,
        initial: int = INITIAL_LIMIT,
        minimum: int = 1,
        tolerance: float = 1.5,
        smoothing: float = 0.3,
        backoff: float = 0.7,
        probe_every_s: float = 30.0,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.tolerance = tolerance
        self.smoothing = smoothing
        self.backoff = backoff
        self.probe_every_s = probe_every_s
        self.clock = clock
        self.wall = wall  # the time replicas agree on (knee_at)
        self._limit = self._clamp(initial)
        self.ssthresh = math.inf  # below it: slow start (doubling per round trip)
        self.baseline_s: float | None = None
        #: The limit of the whole fleet (ours + the other replicas') when this replica last saw the server queue.
        self.knee_total: float | None = None
        self.knee_at: float | None = None  # wall time of that
        self.fleet_others = 0.0  # the other replicas' limits together, as last read (:meth:`rebalance`)
        self._measured_at = clock()
        self._last_cut = -math.inf
        self._probe_from: float | None = None  # requests started from then on measure the baseline
        self._probe: list[float] = []
        self._window: list[float] = []
        self._window_peak = 0
        self._window_held = False  # requests waited for a slot during the window: the limit was binding
        self._queue_at = -math.inf
        self._queueing_polls = 0
        self._fastest = math.inf  # the fastest answer so far

    @property
    def limit(self) -> int:
        """The number of requests allowed in flight now (half of it while probing)."""
        limit = max(self.minimum, int(self._limit))
        return max(self.minimum, limit // 2) if self._probe_from is not None else limit

    @property
    def slow_start(self) -> bool:
        return self._limit < self.ssthresh

    @property
    def signal(self) -> Signal:
        """``queue`` while the server's metrics are current, else ``latency``."""
        return "queue" if self.clock() - self._queue_at <= QUEUE_FRESH_S else "latency"

    def _clamp(self, value: float) -> float:
        return max(float(self.minimum), min(float(self.maximum), float(value)))

    # --- what it has learned ---------------------------------------------------------------------------
    def learned(self) -> Learned:
        return Learned(self._limit, None if math.isinf(self.ssthresh) else self.ssthresh, self.baseline_s)

    def restore(self, learned: Learned) -> None:
        """Start from what was learned before (this replica's last run, or the fleet's share for it)."""
        self._limit = self._clamp(learned.limit)
        self.ssthresh = math.inf if learned.ssthresh is None else max(float(self.minimum), learned.ssthresh)
        if learned.baseline_s is not None and learned.baseline_s > 0:
            self.baseline_s = learned.baseline_s
            self._measured_at = self.clock()

    def rebalance(self, target: float, others: float, *, contended: bool = True) -> None:
        """Move toward ``target``, this replica's fair share of the fleet: down to it at once (another replica is
        held back below its share); up to it at once when no other replica is held back (the room is unused),
        else half-way (the others come down in their own time). ``others``: the other replicas' limits together."""
        self.fleet_others = others
        target = self._clamp(target)
        up = target - self._limit
        self._limit = target if up < 0 or not contended else self._limit + up / 2

    def settle(self) -> None:
        """Another replica found where the server queues: slow start ends here too (the fleet's share follows)."""
        self.ssthresh = min(self.ssthresh, self._limit)

    def _learned_the_knee(self) -> None:
        """The server queued at the current limit: remember it for the fleet (and the next start)."""
        self.ssthresh = max(float(self.minimum), self._limit)
        self.knee_total = self._limit + self.fleet_others
        self.knee_at = self.wall()

    # --- signals ---------------------------------------------------------------------------------------
    def record(
        self, *, rtt_s: float, in_flight: int, outcome: Outcome, started_at: float, held_back: bool = False
    ) -> None:
        """One finished request: its latency, how many were in flight when it started (itself included),
        whether it succeeded, was refused for overload (429, 502-504, a broken connection, a timeout) or
        failed otherwise, and whether the limit holds requests back now (they wait for a slot).

        In slow start each answer as fast as the baseline allows while requests wait adds one (the limit
        doubles per round trip, like TCP's window per acknowledgement)."""
        now = self.clock()
        if outcome == "overload":
            self._cut(now)
        elif outcome == "ok":
            if self._probe_from is not None:
                self._probe_sample(rtt_s, started_at, now)
            else:
                self._fastest = min(self._fastest, rtt_s)
                baseline = self.baseline_s if self.baseline_s is not None else self._fastest  # until the first window
                if held_back and self.slow_start and self.signal == "latency" and rtt_s <= self.tolerance * baseline:
                    self._grow(self._limit + 1)
                self._window.append(rtt_s)
                self._window_peak = max(self._window_peak, in_flight)
                self._window_held = self._window_held or held_back
                size = 4 if self.baseline_s is None else max(4, math.ceil(self._limit / 2))  # the first: the fastest
                if len(self._window) >= size:
                    self._close_window(now)

    def observe_queue(self, running: float, waiting: float, in_flight: int, held_back: bool) -> None:
        """A reading of the server's metrics: requests it runs and requests waiting in its queue (all clients'),
        with ``in_flight`` of ours and whether our limit holds requests back now.

        A queue in two readings in a row: the limit falls to our share of what the server runs (our in-flight
        requests times running / (running + waiting)). No queue while the limit holds requests back: it grows,
        doubling per reading in slow start (the next reading shows an overshoot), else by a queue's worth."""
        now = self.clock()
        self._queue_at = now
        if waiting >= 1:
            self._queueing_polls += 1
            if self._queueing_polls >= 2:
                share = running / max(1.0, running + waiting)
                target = self._clamp(max(in_flight, self.minimum) * share)
                if target < self._limit:
                    self._last_cut = now
                    self._limit = target
                    self._after_decrease()
            return
        self._queueing_polls = 0
        if held_back and in_flight >= self.limit - 1:
            step = self._limit if self.slow_start else max(1.0, self.smoothing * math.sqrt(self._limit))
            self._grow(self._limit + step)

    def _grow(self, grown: float) -> None:
        if self._limit < self.ssthresh < grown:  # slow start ends at the remembered level
            grown = self.ssthresh
        self._limit = self._clamp(grown)

    def _after_decrease(self) -> None:
        self._learned_the_knee()
        self._probe_from = None
        self._window.clear()
        self._window_peak, self._window_held = 0, False

    def _probe_interval(self) -> float:
        return max(self.probe_every_s, 10 * (self.baseline_s or 0.0))

    def _cut(self, now: float) -> None:
        """Multiplicative decrease, at most once per baseline latency (one round of requests)."""
        if now - self._last_cut < max(1.0, self.baseline_s or 0.0):
            return
        self._last_cut = now
        self._limit = self._clamp(self._limit * self.backoff)
        self._after_decrease()

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
        under half of it, the latency is the light-load baseline; when requests waited for a slot
        (``binding``), the limit holds requests back and may grow; otherwise it may only shrink (a limit far
        above the demand would let a burst queue inside the server, out of reach of the service's fair queue)."""
        short = sum(self._window) / len(self._window)
        peak, binding = self._window_peak, self._window_held
        self._window.clear()
        self._window_peak, self._window_held = 0, False
        if self.baseline_s is None or peak < self._limit / 2:
            self.baseline_s = short if self.baseline_s is None else (self.baseline_s + short) / 2
            self._measured_at = now
            if peak < self._limit / 2:
                return
        queue = self.signal == "queue"
        if short < self.baseline_s:  # less loaded than the baseline says: lower it (gradually: windows are noisy)
            self.baseline_s += (short - self.baseline_s) * self.smoothing
        if queue:
            return  # the server's queue says when to shrink and grow (observe_queue); no probes
        gradient = max(0.5, min(1.0, self.tolerance * self.baseline_s / short))
        if gradient < 1.0:  # queueing in the server: shrink in proportion (slow start ends where it shows)
            factor = max(0.5, gradient**2) if self.slow_start else 1 - self.smoothing + self.smoothing * gradient
            self._limit = self._clamp(self._limit * factor)
            self._learned_the_knee()
        elif binding and not self.slow_start:  # latency holds: grow by a queue's worth (slow start: per answer)
            self._grow(self._limit + self.smoothing * math.sqrt(self._limit))
        if not binding and short <= self.baseline_s * (1 + self.tolerance) / 2:
            self._measured_at = now  # nothing held back, latency near the baseline: nothing to re-measure
        elif binding and now - self._measured_at >= self._probe_interval() and self._at_probe_time():
            self._probe_from, self._probe = now, []  # held back for a while: re-measure the baseline

    def _at_probe_time(self) -> bool:
        """Probes start in the first seconds of each probe interval of the wall clock, so that replicas sharing the
        server probe together (one replica's probe alone would measure the others' queue)."""
        return self.wall() % self._probe_interval() < max(5.0, 2 * (self.baseline_s or 0.0))


Limit = FixedLimit | GradientLimit
