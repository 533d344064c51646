"""The VLM request limit: the adaptive policy against simulated servers (tests/support/limiter_sim.py), its slow
start, the server's queue as the signal, the async slots and the page gate."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

import pytest

from app.engines.paddleocr_vl.limiter import INITIAL_LIMIT, QUEUE_FRESH_S, FixedLimit, GradientLimit, Limit
from app.engines.paddleocr_vl.slots import PageGate, RequestSlots
from app.engines.paddleocr_vl.status import LATENCY_BUCKETS
from tests.support.limiter_sim import Replica, Simulation


def auto(clock: Callable[[], float]) -> Limit:
    return GradientLimit(128, clock=clock, wall=clock)


def alone(capacity: int, clients: int, until: float, *, pages: int | None = None, **options: object) -> Replica:
    """One replica with ``clients`` in front of a 2 s server for ``capacity``; the engine loads in 1 s."""
    sim = Simulation(capacity, **options)  # type: ignore[arg-type]
    replica = sim.add(auto, clients, pages=pages)
    sim.run(until)
    return replica


@pytest.mark.parametrize("capacity", [4, 16, 64])
@pytest.mark.parametrize("clients", [1, 4, 16, 64])
def test_auto_reaches_the_servers_ceiling(capacity: int, clients: int) -> None:
    """A 2 s server that takes ``capacity`` requests at once: the limit finds it from the default start."""
    run = alone(capacity, clients, 301)
    ceiling = min(capacity, clients) / 2.0
    assert run.pages_per_s(1, 301) >= 0.9 * ceiling  # ramp-up and probes included
    assert run.pages_per_s(151, 301) >= 0.95 * ceiling
    if clients <= capacity:  # once it has grown (slow start: a round or two), no request waits for a slot
        assert run.latencies(10)[-1] <= 2.0 + 1e-9
    low, high = run.limit_range(150)
    assert low >= min(capacity, clients) // 2 and high <= 128


def test_slow_start_doubles_per_round_trip_until_the_server_queues() -> None:
    """No history, a server for 64: 16 at once, then twice as many each round (2 s) while the latency holds."""
    run = alone(64, 256, 20)
    limit_at = {round(t): limit for t, limit in run.limits}
    assert limit_at[3] >= 2 * INITIAL_LIMIT and limit_at[5] >= 4 * INITIAL_LIMIT
    assert run.limit_range(12)[0] >= 48 and run.limit_range(12)[1] <= 128  # it stopped near the server's 64
    policy = run.policy
    assert isinstance(policy, GradientLimit) and not policy.slow_start and policy.ssthresh <= 128


@pytest.mark.parametrize(("capacity", "clients"), [(16, 16), (64, 64), (4, 16)])
def test_a_burst_on_a_fresh_service(capacity: int, clients: int) -> None:
    """``clients`` x 4 pages on a service that has learned nothing: at 16 the start is enough, at 64 the doubling
    costs two rounds, at 4 the server's queue holds the excess of the start (no error, nothing lost)."""
    sim = Simulation(capacity)
    run = sim.add(auto, clients, pages=4)
    sim.run(600)
    ceiling = min(capacity, clients) / 2.0
    share = run.burst_pages_per_s() / ceiling
    assert len(run.completions) == clients * 4
    assert share >= {16: 0.99, 64: 0.65, 4: 0.95}[capacity]
    if capacity == 4:
        assert sim.peak_queue <= INITIAL_LIMIT and max(run.latencies(0)) <= 2 * INITIAL_LIMIT / 4 * 2 + 2
        assert run.limits[-1][1] <= 8


def test_auto_keeps_the_servers_queue_short() -> None:
    """64 clients, a server for 4: requests wait in the service (fairly), not inside the server."""
    run = alone(4, 64, 300)
    _, high = run.limit_range(150)
    assert high <= 12  # a fixed 64 would queue 60 requests inside the server
    sim = Simulation(4)
    fixed = sim.add(lambda clock: FixedLimit(64), 64)
    sim.run(300)
    assert fixed.limit_range(150) == (64, 64)


def test_auto_copes_with_uneven_requests() -> None:
    """Latency varying ±50 % from request to request (pages with more or less text) does not collapse it."""
    for capacity in (4, 64):
        run = alone(capacity, 64, 300, noise=0.5)
        assert run.pages_per_s(150, 300) >= 0.9 * capacity / 2.0


def batching(busy: int) -> float:
    """A batching server: 2 s per request alone, slower per request the more it runs at once."""
    return 2.0 * (1 + busy / 64)


def test_auto_grows_while_batching_pays() -> None:
    """A batching server (hundreds of slots): more at once is still more pages/s, so the limit goes well past a
    fixed 8 and most of the way to the top."""
    run = alone(256, 256, 300, service_s=batching)
    sim = Simulation(256, service_s=batching)
    fixed = sim.add(lambda clock: FixedLimit(8), 256)
    sim.run(120)
    assert run.limit_range(150)[1] >= 96
    assert run.pages_per_s(150, 300) >= 4 * fixed.pages_per_s(60, 120)


def test_the_servers_queue_is_the_signal_where_it_can_be_read() -> None:
    """With the server's metrics: a batching server is filled to its slots although its latency doubles (the
    latency alone stops short), and a small one is held to its slots within seconds."""
    by_latency = alone(128, 256, 120, service_s=batching)
    by_queue = alone(128, 256, 120, service_s=batching, metrics_every=0.5)
    assert by_queue.policy.signal == "queue" and by_latency.policy.signal == "latency"
    assert by_queue.limit_range(60)[0] >= 96 and by_latency.limit_range(60)[1] < 96
    assert by_queue.pages_per_s(60, 120) >= 1.2 * by_latency.pages_per_s(60, 120)
    sim = Simulation(4, metrics_every=0.5)
    small = sim.add(auto, 64)
    sim.run(60)
    assert small.limit_range(10)[1] <= 6 and small.pages_per_s(10, 60) >= 0.95 * 2


def test_without_fresh_readings_the_latency_is_the_signal_again() -> None:
    now = [0.0]
    limit = GradientLimit(128, clock=lambda: now[0], wall=lambda: now[0])
    limit.observe_queue(10, 0, 10, held_back=False)
    assert limit.signal == "queue"
    now[0] += QUEUE_FRESH_S + 0.1
    assert limit.signal == "latency"


def test_the_queue_signal_ignores_a_blip_and_cuts_to_the_share() -> None:
    now = [0.0]
    limit = GradientLimit(128, initial=40, clock=lambda: now[0], wall=lambda: now[0])
    limit.observe_queue(32, 3, 40, held_back=True)  # one reading with a queue: a blip
    assert limit.limit == 40
    limit.observe_queue(32, 0, 40, held_back=True)  # no queue, held back: slow start doubles
    assert limit.limit == 80
    for _ in range(2):
        limit.observe_queue(32, 48, 80, held_back=True)  # the server runs 32 and 48 wait: our share is 32
    assert limit.limit == 32 and not limit.slow_start and limit.knee_total == 32


@pytest.mark.parametrize("clients", [4, 16])
def test_the_limit_stays_near_the_demand(clients: int) -> None:
    """The limit grows only while it holds requests back: a burst after a quieter time meets a limit near what
    was used (or the start), so it waits in the service's fair queue, not inside the server (where a 1-page
    request would queue behind a whole document)."""
    run = alone(64, clients, 120)
    assert run.limit_range(60)[1] <= max(INITIAL_LIMIT, 1.25 * clients)


def test_a_burst_after_a_quiet_time_is_served_at_once() -> None:
    """4 clients for a minute, then 28 more on a server for 32: the limit follows within a few rounds and does not
    pick that moment to probe (halving) just because nothing was re-measured while it held nothing back."""
    sim = Simulation(32)
    run = sim.add(auto, 4)
    sim.more_clients(60.0, run, 28)
    sim.run(120)
    before = [limit for t, limit in run.limits if 50 < t <= 60]
    after = [limit for t, limit in run.limits if 60 < t <= 75]
    assert min(after) >= max(before) == INITIAL_LIMIT
    assert run.pages_per_s(60, 120) >= 0.9 * 32 / 2.0


def test_a_limit_restored_from_memory_starts_there() -> None:
    limit = GradientLimit(128, clock=lambda: 0.0)
    limit.restore(limit.learned().__class__(limit=48.0, ssthresh=48.0, baseline_s=2.0))
    assert (limit.limit, limit.slow_start, limit.baseline_s) == (48, False, 2.0)
    limit.restore(limit.learned().__class__(limit=500.0, ssthresh=None, baseline_s=None))
    assert limit.limit == 128 and limit.slow_start and limit.baseline_s == 2.0
    assert math.isinf(limit.ssthresh)


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


def test_pages_held_at_the_gate_count_as_held_back() -> None:
    """In the service, pages wait at the page gate (in the scheduler's fair queue), not for a slot: an answer while
    a page was turned away grows the limit in slow start, as a request waiting for a slot would."""

    async def scenario() -> None:
        now = [0.0]
        slots = RequestSlots(GradientLimit(128, initial=2, clock=lambda: now[0], wall=lambda: now[0]))
        gate = PageGate(slots)
        assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
        assert slots.pages_held and slots.usage().binding
        held = [await slots.acquire(), await slots.acquire()]
        now[0] = 2.0
        slots.release(held[0], 2.0, "ok")
        assert slots.policy.limit == 3  # +1: a page was waiting
        gate.leave()
        assert gate.try_enter() and not slots.pages_held  # the waiting page got in; none left
        slots.release(held[1], 2.0, "ok")
        assert slots.policy.limit == 3  # nothing waited: no growth

    asyncio.run(scenario())
