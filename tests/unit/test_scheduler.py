"""The page scheduler is fair between owners and never loses or duplicates work."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

import pytest

from app.scheduler import PageScheduler


def test_round_robin_between_owners() -> None:
    scheduler = PageScheduler(workers=1)
    gate = threading.Event()
    order: list[str] = []
    blocker = scheduler.submit("blocker", gate.wait)
    big = [scheduler.submit("big", lambda i=i: order.append(f"big{i}")) for i in range(5)]
    small = scheduler.submit("small", lambda: order.append("small"))
    gate.set()
    for future in [blocker, *big, small]:
        future.result(10)
    assert order.index("small") <= 1, order  # not behind the whole big document
    assert [x for x in order if x.startswith("big")] == [f"big{i}" for i in range(5)]
    scheduler.shutdown()


def test_exceptions_reach_the_caller_and_workers_survive() -> None:
    scheduler = PageScheduler(workers=2)

    def boom() -> None:
        raise ValueError("bad page")

    with pytest.raises(ValueError, match="bad page"):
        scheduler.submit("a", boom).result(5)
    assert scheduler.submit("a", lambda: 42).result(5) == 42
    scheduler.shutdown()


class _Page:
    """Stands for what a page task holds (a decoded image): only its lifetime matters here."""


def test_idle_workers_hold_nothing_of_their_last_task() -> None:
    """A worker waiting for work keeps neither its last callable (and the page it closes over) nor its result: with
    many workers each idle one kept its last page, ~6.5 MB for an A4 page, so memory grew with the worker count."""
    scheduler = PageScheduler(workers=4)
    pages, results = [], []
    for _ in range(8):  # more tasks than workers, one at a time: every worker runs one and goes idle
        page, result = _Page(), _Page()
        pages.append(weakref.ref(page))
        results.append(weakref.ref(result))
        scheduler.submit("doc", lambda page=page, result=result: (page, result)[1]).result(5)
        del page, result
    deadline = time.monotonic() + 5  # a worker lets go right after it hands the result over
    while any(ref() is not None for ref in pages + results) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [ref() for ref in pages] == [None] * 8
    assert [ref() for ref in results] == [None] * 8
    scheduler.shutdown()


def test_every_task_runs_exactly_once() -> None:
    scheduler = PageScheduler(workers=3)
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def record(i: int) -> int:
        with lock:
            counts[i] = counts.get(i, 0) + 1
        return i

    futures = [scheduler.submit(f"owner{i % 4}", lambda i=i: record(i)) for i in range(200)]
    assert sorted(f.result(10) for f in futures) == list(range(200))
    assert set(counts.values()) == {1}
    scheduler.shutdown()


def test_shutdown_cancels_queued_work() -> None:
    scheduler = PageScheduler(workers=1)
    gate, started = threading.Event(), threading.Event()
    running = scheduler.submit("a", lambda: started.set() or gate.wait())
    assert started.wait(5)
    queued = scheduler.submit("a", lambda: None)
    scheduler.shutdown(wait=False)
    assert queued.cancelled()
    gate.set()
    assert running.result(5) is True
    with pytest.raises(RuntimeError):
        scheduler.submit("a", lambda: None)


class CountingGate:
    """A gate with room for ``room`` tasks; ``widen`` adds room and says so, like the VLM page gate."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.inside = 0
        self.most = 0
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def try_enter(self) -> bool:
        with self._lock:
            if self.inside >= self.room:
                return False
            self.inside += 1
            self.most = max(self.most, self.inside)
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1
        self._notify()

    def on_room(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def widen(self, room: int) -> None:
        with self._lock:
            self.room = room
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()


def test_a_gate_bounds_its_tasks_and_the_rest_wait_in_the_queue() -> None:
    scheduler = PageScheduler(workers=8)
    gate = CountingGate(room=2)
    ran: list[int] = []
    futures = [scheduler.submit("doc", lambda i=i: (ran.append(i), time.sleep(0.02)), gate) for i in range(12)]
    for future in futures:
        future.result(10)
    assert gate.most == 2 and gate.inside == 0
    assert sorted(ran) == list(range(12))
    scheduler.shutdown()


def test_a_gated_queue_stays_fair_between_owners() -> None:
    scheduler = PageScheduler(workers=8)
    gate = CountingGate(room=1)
    release = threading.Event()
    order: list[str] = []
    first = scheduler.submit("big", release.wait, gate)
    big = [scheduler.submit("big", lambda i=i: order.append(f"big{i}"), gate) for i in range(6)]
    small = scheduler.submit("small", lambda: order.append("small"), gate)
    time.sleep(0.05)
    assert order == [] and scheduler.queued == 7  # waiting in the fair queue, not on the workers
    release.set()
    for future in [first, *big, small]:
        future.result(10)
    assert order.index("small") <= 1, order


def test_more_room_wakes_the_workers() -> None:
    scheduler = PageScheduler(workers=4)
    gate = CountingGate(room=0)
    futures = [scheduler.submit(f"o{i}", lambda i=i: i, gate) for i in range(3)]
    time.sleep(0.05)
    assert not any(f.done() for f in futures)
    gate.widen(3)
    assert [f.result(5) for f in futures] == [0, 1, 2]
    ungated = scheduler.submit("other", lambda: "free")  # tasks without a gate never wait for one
    assert ungated.result(5) == "free"
    scheduler.shutdown()
