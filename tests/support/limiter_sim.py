"""A discrete-event simulation of replicas of the service in front of one VLM server, for the limiter's unit tests.

Each replica has clients (closed loop: the next page as soon as the last one is answered; ``pages`` per client,
or without end), a limit (the real :mod:`app.engines.paddleocr_vl.limiter` policy) with a FIFO queue in front
of it (the service's), and optionally the real :class:`~app.engines.paddleocr_vl.fleet.LimitKeeper` publishing
to a shared :class:`DictMemory` every ``sync_every`` seconds. The server works on ``capacity`` requests at once,
each for ``service_s`` (or ``service_s(busy)``) seconds (± ``noise``), the rest waiting in its own FIFO queue:
the VLM stand-in's model. With ``metrics_every`` the replicas read the server's queue (running, waiting) that
often, as from vLLM's ``/metrics``. Time is simulated: a 300 s run takes milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from app.engines.paddleocr_vl.fleet import LimitKeeper
from app.engines.paddleocr_vl.limiter import GradientLimit, Learned, Limit
from app.engines.paddleocr_vl.memory import Snapshot
from app.engines.paddleocr_vl.slots import Usage

MakeLimit = Callable[[Callable[[], float]], Limit]


class DictMemory:
    """A :class:`~app.engines.paddleocr_vl.memory.LimiterMemory` in a dict (the bucket, without the network)."""

    where = "memory"

    def __init__(self) -> None:
        self.snapshots: dict[str, Snapshot] = {}

    def save(self, snapshot: Snapshot) -> None:
        self.snapshots[snapshot.replica] = snapshot

    def load(self, recent_s: float | None = None) -> list[Snapshot]:
        newest = max((s.at for s in self.snapshots.values()), default=0.0)
        return [s for s in self.snapshots.values() if recent_s is None or newest - s.at <= recent_s]


@dataclass
class Replica:
    """One service replica in the simulation; results in ``completions`` (answered at, client latency) and
    ``limits`` (time, limit after each answer)."""

    name: str
    policy: Limit
    clients: int
    pages: int | None
    start_at: float
    waiting: deque[int] = field(default_factory=deque)
    in_flight: int = 0
    held_back: bool = False
    peak: int = 0
    completions: list[tuple[float, float]] = field(default_factory=list)
    limits: list[tuple[float, int]] = field(default_factory=list)
    keeper: LimitKeeper | None = None

    def held_back_now(self) -> bool:
        return bool(self.waiting) and self.in_flight <= self.policy.limit

    # --- what LimitKeeper needs (the LimitHolder protocol) ---------------------------------------------
    def usage(self) -> Usage:
        used = Usage(binding=self.held_back or bool(self.waiting), peak=self.peak)
        self.held_back, self.peak = False, self.in_flight
        return used

    def learned(self) -> Learned | None:
        return self.policy.learned() if isinstance(self.policy, GradientLimit) else None

    def adjust(self, change: Callable[[GradientLimit], None]) -> None:
        if isinstance(self.policy, GradientLimit):
            change(self.policy)

    # --- results ---------------------------------------------------------------------------------------
    def pages_per_s(self, start: float, end: float) -> float:
        return sum(start < t <= end for t, _ in self.completions) / (end - start)

    def latencies(self, start: float) -> list[float]:
        return sorted(rtt for t, rtt in self.completions if t > start)

    def limit_range(self, start: float, end: float = float("inf")) -> tuple[int, int]:
        values = [limit for t, limit in self.limits if start < t <= end]
        return min(values), max(values)

    @property
    def finished_at(self) -> float:
        return self.completions[-1][0] if self.completions else 0.0

    def burst_pages_per_s(self) -> float:
        """Pages per second from the first page sent (``start_at`` + the engine's load) to the last answer."""
        first = min((t - rtt for t, rtt in self.completions), default=0.0)
        return len(self.completions) / max(1e-9, self.finished_at - first)


class Simulation:
    """See the module docstring. ``add`` replicas, then ``run``."""

    def __init__(
        self,
        capacity: int,
        *,
        service_s: float | Callable[[int], float] = 2.0,
        noise: float = 0.0,
        metrics_every: float | None = None,
        sync_every: float | None = None,
        memory: DictMemory | None = None,
        load_s: float = 1.0,
        start: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.capacity = capacity
        self.service_s = service_s
        self.noise = noise
        self.metrics_every = metrics_every
        self.sync_every = sync_every
        self.memory = memory if memory is not None else DictMemory()
        self.load_s = load_s
        self.start = start  # the clock at the beginning (times given to add, more_clients and run count from it)
        self.now = start
        self.replicas: list[Replica] = []
        self.busy = 0
        self.peak_queue = 0
        self._rng = random.Random(seed)
        self._events: list[tuple[float, int, str, int, int]] = []
        self._order = itertools.count()
        self._ids = itertools.count()
        self._server_queue: deque[tuple[int, int]] = deque()
        self._started: dict[int, tuple[float, int]] = {}
        self._sent: dict[int, float] = {}
        self._left: dict[tuple[int, int], int] = {}
        self._client_of: dict[int, int] = {}

    def clock(self) -> float:
        return self.now

    def add(
        self, make: MakeLimit, clients: int, *, pages: int | None = None, start_at: float = 0.0, name: str = ""
    ) -> Replica:
        replica = Replica(name or f"r{len(self.replicas)}", make(self.clock), clients, pages, self.start + start_at)
        if self.sync_every is not None:
            replica.keeper = LimitKeeper(replica, self.memory, replica.name, self.sync_every, wall=self.clock)
        self.replicas.append(replica)
        self._push(self.start + start_at, "start", len(self.replicas) - 1)
        return replica

    def more_clients(self, at: float, replica: Replica, clients: int) -> None:
        self._push(self.start + at, "clients", self.replicas.index(replica), clients)

    def _push(self, at: float, kind: str, index: int, payload: int = 0) -> None:
        heapq.heappush(self._events, (at, next(self._order), kind, index, payload))

    def run(self, until: float) -> Simulation:
        if self.metrics_every is not None:
            self._push(self.start + self.metrics_every, "poll", -1)
        while self._events:
            at, _, kind, index, payload = heapq.heappop(self._events)
            if at > self.start + until:
                break
            self.now = at
            if kind == "done":
                self._done(index, payload)
            elif kind == "start":
                self._start_replica(index)
            elif kind == "begin":
                self._begin_serving(index)
            elif kind == "clients":
                self._add_clients(index, payload)
            elif kind == "sync":
                self._sync(index)
            elif kind == "poll":
                self._poll()
        for replica in self.replicas:
            if replica.keeper is not None:
                replica.keeper.stop()
        return self

    # --- events ----------------------------------------------------------------------------------------
    def _start_replica(self, index: int) -> None:
        """A replica starts: it announces itself, loads its engine for ``load_s``, then serves its clients."""
        replica = self.replicas[index]
        if replica.keeper is not None:
            replica.keeper.join()
        self._push(self.now + self.load_s, "begin", index)

    def _begin_serving(self, index: int) -> None:
        replica = self.replicas[index]
        if replica.keeper is not None:
            replica.keeper.begin()
            self._push(self.now + (self.sync_every or 0.0), "sync", index)
        self._add_clients(index, replica.clients)

    def _add_clients(self, index: int, clients: int) -> None:
        replica = self.replicas[index]
        first = sum(1 for key in self._left if key[0] == index)
        for client in range(first, first + clients):
            self._left[(index, client)] = replica.pages if replica.pages is not None else -1
            self._send(index, client)

    def _send(self, index: int, client: int) -> None:
        replica = self.replicas[index]
        left = self._left[(index, client)]
        if left == 0:
            return
        self._left[(index, client)] = left - 1
        rid = next(self._ids)
        self._sent[rid] = self.now
        self._client_of[rid] = client
        if not replica.waiting and replica.in_flight < replica.policy.limit:
            self._begin(index, rid)
        else:
            replica.held_back = True
            replica.waiting.append(rid)

    def _begin(self, index: int, rid: int) -> None:
        replica = self.replicas[index]
        replica.in_flight += 1
        replica.peak = max(replica.peak, replica.in_flight)
        self._started[rid] = (self.now, replica.in_flight)
        if self.busy < self.capacity:
            self.busy += 1
            self._serve(index, rid)
        else:
            self._server_queue.append((index, rid))
            self.peak_queue = max(self.peak_queue, len(self._server_queue))

    def _serve(self, index: int, rid: int) -> None:
        base = self.service_s(self.busy) if callable(self.service_s) else self.service_s
        seconds = base * (1 + self.noise * (2 * self._rng.random() - 1))
        self._push(self.now + seconds, "done", index, rid)

    def _done(self, index: int, rid: int) -> None:
        replica = self.replicas[index]
        self.busy -= 1
        if self._server_queue:
            self.busy += 1
            self._serve(*self._server_queue.popleft())
        began, in_flight_then = self._started.pop(rid)
        replica.in_flight -= 1
        replica.policy.record(
            rtt_s=self.now - began,
            in_flight=in_flight_then,
            outcome="ok",
            started_at=began,
            held_back=replica.held_back_now(),
        )
        replica.completions.append((self.now, self.now - self._sent.pop(rid)))
        replica.limits.append((self.now, replica.policy.limit))
        self._admit(index)
        self._send(index, self._client_of.pop(rid))

    def _admit(self, index: int) -> None:
        replica = self.replicas[index]
        while replica.waiting and replica.in_flight < replica.policy.limit:
            self._begin(index, replica.waiting.popleft())

    def _sync(self, index: int) -> None:
        replica = self.replicas[index]
        assert replica.keeper is not None and self.sync_every is not None
        replica.keeper.sync_once()
        self._admit(index)
        self._push(self.now + self.sync_every, "sync", index)

    def _poll(self) -> None:
        for index, replica in enumerate(self.replicas):
            if replica.start_at <= self.now:
                replica.policy.observe_queue(
                    self.busy, len(self._server_queue), replica.in_flight, replica.held_back_now()
                )
                self._admit(index)
        assert self.metrics_every is not None
        self._push(self.now + self.metrics_every, "poll", -1)
