"""The VLM request limit: the adaptive policy against simulated servers, the async slots, the page gate."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from app.engines.vl_limiter import FixedLimit, GradientLimit, Limit, PageGate, RequestSlots
from app.engines.vl_status import LATENCY_BUCKETS


@dataclass
class Run:
    completions: list[tuple[float, float]] = field(default_factory=list)  # (answered at, seen by the client)
    limits: list[tuple[float, int]] = field(default_factory=list)

    def pages_per_s(self, start: float, end: float) -> float:
        return sum(start < t <= end for t, _ in self.completions) / (end - start)

    def latencies(self, start: float) -> list[float]:
        return sorted(rtt for t, rtt in self.completions if t > start)

    def limit_range(self, start: float) -> tuple[int, int]:
        values = [limit for t, limit in self.limits if t > start]
        return min(values), max(values)


def simulate(
    make: Callable[[Callable[[], float]], Limit],
    *,
    capacity: int,
    clients: int,
    service_s: float | Callable[[int], float] = 2.0,
    duration: float = 120.0,
    noise: float = 0.0,
    more_clients: tuple[float, int] | None = None,
) -> Run:
    """Discrete-event simulation: ``clients`` closed-loop clients (the next request as soon as the last one is
    answered) -> the limit (FIFO when full) -> a server that works on ``capacity`` requests at once, each for
    ``service_s`` (or ``service_s(busy)``), the rest waiting in its own FIFO queue: the VLM stand-in's model.
    ``more_clients`` = (at, n): n more clients join at that time."""
    now = 0.0
    limit = make(lambda: now)
    rng = random.Random(7)
    events: list[tuple[float, int, int]] = []
    order = itertools.count()
    waiting: list[int] = []
    server_queue: list[int] = []
    busy = in_flight = 0
    started: dict[int, tuple[float, int]] = {}
    sent: dict[int, float] = {}
    ids = itertools.count()
    run = Run()

    def serve(rid: int) -> None:
        base = service_s(busy) if callable(service_s) else service_s
        heapq.heappush(events, (now + base * (1 + noise * (2 * rng.random() - 1)), next(order), rid))

    def start(rid: int) -> None:
        nonlocal busy, in_flight
        in_flight += 1
        started[rid] = (now, in_flight)
        if busy < capacity:
            busy += 1
            serve(rid)
        else:
            server_queue.append(rid)

    def send() -> None:
        rid = next(ids)
        sent[rid] = now
        if not waiting and in_flight < limit.limit:
            start(rid)
        else:
            waiting.append(rid)

    for _ in range(clients):
        send()
    if more_clients is not None:
        heapq.heappush(events, (more_clients[0], next(order), -1))
    while events:
        now, _, rid = heapq.heappop(events)
        if now > duration:
            break
        if rid == -1:
            for _ in range(more_clients[1] if more_clients else 0):
                send()
            continue
        busy -= 1
        if server_queue:
            busy += 1
            serve(server_queue.pop(0))
        began, in_flight_then = started.pop(rid)
        in_flight -= 1
        limit.record(rtt_s=now - began, in_flight=in_flight_then, outcome="ok", started_at=began)
        run.completions.append((now, now - sent.pop(rid)))
        run.limits.append((now, limit.limit))
        while waiting and in_flight < limit.limit:
            start(waiting.pop(0))
        send()
    return run


def auto(clock: Callable[[], float]) -> Limit:
    return GradientLimit(128, clock=clock)


@pytest.mark.parametrize("capacity", [4, 16, 64])
@pytest.mark.parametrize("clients", [1, 4, 16, 64])
def test_auto_reaches_the_servers_ceiling(capacity: int, clients: int) -> None:
    """A 2 s server that takes ``capacity`` requests at once: the limit finds it from the default start."""
    run = simulate(auto, capacity=capacity, clients=clients, duration=300)
    ceiling = min(capacity, clients) / 2.0
    assert run.pages_per_s(0, 300) >= 0.9 * ceiling  # ramp-up and probes included
    assert run.pages_per_s(150, 300) >= 0.95 * ceiling
    if clients <= capacity:  # once it has grown (slow start: a few rounds), no request waits for a slot
        assert run.latencies(30)[-1] <= 2.0 + 1e-9
    low, high = run.limit_range(150)
    assert low >= min(capacity, clients) // 2 and high <= 128


def test_auto_keeps_the_servers_queue_short() -> None:
    """64 clients, a server for 4: requests wait in the service (fairly), not inside the server."""
    run = simulate(auto, capacity=4, clients=64, duration=300)
    _, high = run.limit_range(150)
    assert high <= 12  # a fixed 64 would queue 60 requests inside the server
    fixed = simulate(lambda clock: FixedLimit(64), capacity=4, clients=64, duration=300)
    assert fixed.limit_range(150) == (64, 64)


def test_auto_copes_with_uneven_requests() -> None:
    """Latency varying ±50 % from request to request (pages with more or less text) does not collapse it."""
    for capacity in (4, 64):
        run = simulate(auto, capacity=capacity, clients=64, duration=300, noise=0.5)
        assert run.pages_per_s(150, 300) >= 0.9 * capacity / 2.0


def test_auto_grows_while_batching_pays() -> None:
    """A batching server (latency 2 s x (1 + busy/64), hundreds of slots): more at once is still more pages/s,
    so the limit goes well past a fixed 8 and most of the way to the top."""
    run = simulate(auto, capacity=256, clients=256, service_s=lambda busy: 2.0 * (1 + busy / 64), duration=300)
    fixed = simulate(lambda clock: FixedLimit(8), capacity=256, clients=256, service_s=lambda b: 2.0 * (1 + b / 64))
    assert run.limit_range(150)[1] >= 96
    assert run.pages_per_s(150, 300) >= 4 * fixed.pages_per_s(60, 120)


@pytest.mark.parametrize("clients", [4, 16])
def test_the_limit_stays_near_the_demand(clients: int) -> None:
    """The limit grows only while it holds requests back: a burst after a quieter time meets a limit near what
    was used, so it waits in the service's fair queue, not inside the server (where a 1-page request would
    queue behind a whole document)."""
    run = simulate(auto, capacity=64, clients=clients, duration=120)
    assert run.limit_range(60)[1] <= max(8, 1.25 * clients)


def test_a_burst_after_a_quiet_time_is_served_at_once() -> None:
    """4 clients for a minute, then 16 on a server for 16: the limit follows within a few rounds and does not
    pick that moment to probe (halving) just because nothing was re-measured while it held nothing back."""
    run = simulate(auto, capacity=16, clients=4, duration=120, more_clients=(60.0, 12))
    before = [limit for t, limit in run.limits if 50 < t <= 60]
    after = [limit for t, limit in run.limits if 60 < t <= 75]
    assert min(after) >= max(before) == 8
    assert run.pages_per_s(60, 120) >= 0.9 * 16 / 2.0


def test_overload_cuts_the_limit_once_per_round() -> None:
    now = [0.0]
    limit = GradientLimit(128, initial=64, clock=lambda: now[0])
    for _ in range(40):  # a healthy window establishes the baseline: 2 s
        limit.record(rtt_s=2.0, in_flight=64, outcome="ok", started_at=-2.0)
    before = limit.limit
    limit.record(rtt_s=0.1, in_flight=64, outcome="overload", started_at=0.0)  # a 429
    assert limit.limit == int(before * 0.7) and not limit.slow_start
    limit.record(rtt_s=0.1, in_flight=64, outcome="overload", started_at=0.0)  # the same burst
    assert limit.limit == int(before * 0.7)
    now[0] += 2.5
    limit.record(rtt_s=180.0, in_flight=64, outcome="overload", started_at=-177.5)  # a timeout, a round later
    assert limit.limit == int(before * 0.7 * 0.7)
    for _ in range(200):
        limit.record(rtt_s=0.1, in_flight=1, outcome="error", started_at=now[0])  # errors teach nothing
    assert limit.limit >= 1


def test_fixed_limit() -> None:
    limit = FixedLimit(8)
    limit.record(rtt_s=100.0, in_flight=8, outcome="overload", started_at=0.0)
    assert (limit.limit, limit.maximum, limit.mode) == (8, 8, "fixed")


# --- the slots ------------------------------------------------------------------------------------------


def test_slots_hold_the_limit_and_hand_over_in_order() -> None:
    async def scenario() -> list[int]:
        slots = RequestSlots(FixedLimit(2))
        order: list[int] = []
        held = [await slots.acquire(), await slots.acquire()]
        assert slots.in_flight == 2

        async def wait(i: int) -> None:
            started = await slots.acquire()
            order.append(i)
            slots.release(started, 0.01, "ok")

        tasks = [asyncio.create_task(wait(i)) for i in range(5)]
        await asyncio.sleep(0.01)
        assert slots.waiting == 5 and order == []
        for started in held:
            slots.release(started, 1.0, "ok")
        await asyncio.gather(*tasks)
        state = slots.state()
        assert (state.in_flight, state.waiting, state.requests["ok"]) == (0, 0, 7)
        assert state.latency_buckets[LATENCY_BUCKETS.index(1.0)] == 7  # all seven took at most 1 s
        assert state.latency_buckets[0] == 5 and state.latency_sum_s == pytest.approx(2.05)
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_a_slot_released_from_another_thread_wakes_the_waiter() -> None:
    async def scenario() -> None:
        slots = RequestSlots(FixedLimit(1))
        first = await slots.acquire()
        timer = threading.Timer(0.05, slots.release, args=(first, 0.05, "ok"))
        timer.start()
        second = await asyncio.wait_for(slots.acquire(), 5)
        slots.release(second, 0.01, "ok")
        timer.join()
        assert slots.in_flight == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    async def scenario() -> None:
        slots = RequestSlots(FixedLimit(1))
        first = await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0.01)
        slots.release(first, 0.1, "ok")  # hands the slot to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.in_flight == 0 and slots.waiting == 0
        third = await asyncio.wait_for(slots.acquire(), 1)
        slots.release(third, 0.1, "ok")

    asyncio.run(scenario())


def test_the_page_gate_admits_pages_while_the_server_has_room() -> None:
    async def scenario() -> None:
        slots = RequestSlots(FixedLimit(2))
        gate = PageGate(slots)
        rooms: list[int] = []
        gate.on_room(lambda: rooms.append(gate.pages))
        assert gate.try_enter() and gate.try_enter()
        assert not gate.try_enter()  # as many pages as requests allowed
        gate.leave()
        assert rooms == [1]
        held = [await slots.acquire(), await slots.acquire()]
        waiter = asyncio.create_task(slots.acquire())  # one page sent two blocks and a third waits
        await asyncio.sleep(0.01)
        assert not gate.try_enter()  # a request is waiting: no new page
        slots.release(held[0], 0.5, "ok")
        third = await waiter
        assert gate.try_enter()  # nothing waits and 1 page < 2
        for started in (held[1], third):
            slots.release(started, 0.5, "ok")

    asyncio.run(scenario())
