"""The page scheduler is fair between owners and never loses or duplicates work."""

from __future__ import annotations

import threading

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
