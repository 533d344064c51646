"""app.cpu_turns: at most ``size`` holders, the earliest-begun page first, a turn handed back by a request leaving."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.cpu_turns import CpuTurns, page_began, request_leaving, usable_cores


def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def test_usable_cores_is_at_least_one() -> None:
    assert usable_cores() >= 1


def test_no_more_than_size_hold_a_turn_at_once() -> None:
    turns = CpuTurns(2)
    inside, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with turns.turn():
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 2
    assert turns.waiting == 0


def test_the_page_begun_first_is_served_first_whatever_the_order_of_asking() -> None:
    turns = CpuTurns(1)
    held = turns.take()
    served: list[str] = []
    began = time.monotonic()

    def ask(name: str, since: float) -> None:
        with page_began(since), turns.turn():
            served.append(name)

    late = threading.Thread(target=ask, args=("begun later", began + 1.0))
    late.start()
    wait_until(lambda: turns.waiting == 1)
    early = threading.Thread(target=ask, args=("begun earlier", began))  # asks second, begun first
    early.start()
    wait_until(lambda: turns.waiting == 2)
    held.release()
    late.join(5)
    early.join(5)
    assert served == ["begun earlier", "begun later"]


def test_equal_beginnings_are_served_in_the_order_they_asked() -> None:
    turns = CpuTurns(1)
    held = turns.take()
    served: list[int] = []
    since = time.monotonic()

    def ask(index: int) -> None:
        with page_began(since), turns.turn():
            served.append(index)

    threads = []
    for index in range(5):
        thread = threading.Thread(target=ask, args=(index,))
        thread.start()
        wait_until(lambda count=index + 1: turns.waiting == count)  # type: ignore[misc]
        threads.append(thread)
    held.release()
    for thread in threads:
        thread.join(5)
    assert served == [0, 1, 2, 3, 4]


def test_a_release_counts_once() -> None:
    turns = CpuTurns(1)
    first = turns.take()
    first.release()
    first.release()  # a second release must not free a place someone else holds
    second = turns.take()
    got_third = threading.Event()
    thread = threading.Thread(target=lambda: (turns.take(), got_third.set()))
    thread.start()
    assert not got_third.wait(0.2)
    second.release()
    assert got_third.wait(5)
    thread.join(5)


def test_a_request_leaving_on_another_threads_loop_gives_the_turn_back() -> None:
    """The VLM client runs on paddlex's own event-loop thread; the coroutine runs in a copy of the caller's context,
    so the transport's request_leaving() finds the turn the page thread holds."""
    turns = CpuTurns(1)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    async def send() -> None:
        request_leaving()
        await asyncio.sleep(0.5)  # "waiting for the VLM": the turn must be free meanwhile

    got = threading.Event()

    def other_taker() -> None:  # in a thread of its own: a turn never given back fails the test, not hangs it
        turns.take().release()
        got.set()

    try:
        turn = turns.take()
        with turn.until_request_leaves():
            future = asyncio.run_coroutine_threadsafe(send(), loop)
            threading.Thread(target=other_taker, daemon=True).start()
            freed_while_waiting = got.wait(0.4)  # the "VLM" answers after 0.5 s
            turn.release()  # already given back: no effect (or, if not, lets the taker finish)
            future.result(5)
        assert freed_while_waiting, "the turn was not given back when the request left"
        assert got.wait(5)
        assert turns.waiting == 0
        with turns.turn():  # exactly one place again
            pass
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        loop.close()


def test_request_leaving_outside_a_held_turn_does_nothing() -> None:
    request_leaving()


@pytest.mark.parametrize("size", [0, -3])
def test_size_is_at_least_one(size: int) -> None:
    assert CpuTurns(size).size == 1
