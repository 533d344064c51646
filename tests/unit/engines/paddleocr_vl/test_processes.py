"""The parts of page processes (:mod:`app.engines.paddleocr_vl.processes`) that need no pipeline: how many, the slot
protocol's child side over a real socket pair, errors rebuilt; the processes themselves are in
tests/integration/test_paddleocr_vl_processes.py."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import numpy as np
import pytest

from app.engines.errors import VlmFailed, VlmTimeout, VlmUnavailable
from app.engines.paddleocr_vl.channel import Channel, engine_error
from app.engines.paddleocr_vl.config import page_processes
from app.engines.paddleocr_vl.limiter import FixedLimit
from app.engines.paddleocr_vl.page_process import RemoteSlots
from app.engines.paddleocr_vl.slots import RequestSlots
from app.settings import Settings


@pytest.mark.parametrize(("cores", "expected"), [(1, 0), (2, 0), (3, 0), (4, 1), (8, 2), (15, 3), (16, 4), (64, 4)])
def test_auto_is_one_page_process_per_four_cores_up_to_four(cores: int, expected: int) -> None:
    settings = Settings(vl_backend="vllm-server", vl_server_url="http://vlm:8000/v1")
    assert page_processes(settings, cores) == expected


def test_a_number_is_taken_and_the_native_backend_has_none() -> None:
    assert page_processes(Settings(vl_backend="sglang-server", vl_page_processes="3"), 2) == 3
    assert page_processes(Settings(vl_backend="vllm-server", vl_page_processes="0"), 16) == 0
    assert page_processes(Settings(vl_backend="native", vl_page_processes="2"), 16) == 0
    assert Settings(vl_page_processes=" AUTO ").vl_page_processes == "auto"


def test_engine_errors_are_rebuilt_with_their_kind() -> None:
    failed = engine_error("VlmFailed", "the VLM server answered HTTP 400", 400)
    assert isinstance(failed, VlmFailed) and failed.status_code == 400
    assert isinstance(engine_error("VlmTimeout", "late", None), VlmTimeout)
    assert isinstance(engine_error("VlmUnavailable", "gone", None), VlmUnavailable)
    bug = engine_error("", "KeyError: 'res'", None)
    assert type(bug) is RuntimeError and str(bug) == "KeyError: 'res'"
    assert type(engine_error("Path", "not an engine error", None)) is RuntimeError


def test_a_page_array_crosses_the_socket_whole_and_writable() -> None:
    left, right = (Channel(s) for s in socket.socketpair())
    page = np.random.default_rng(1).integers(0, 255, (1754, 1240, 3), dtype=np.uint8)
    strided = page[:, ::2]  # not contiguous: sent as its pixels all the same
    sender = threading.Thread(target=left.send, args=(("page", 7, [page.shape, strided.shape]), page, strided))
    sender.start()
    assert right.receive() == ("page", 7, [page.shape, strided.shape])
    got = right.receive_array(page.shape)
    got_strided = right.receive_array(strided.shape)
    sender.join()
    assert np.array_equal(got, page) and got.flags.writeable
    assert np.array_equal(got_strided, strided)
    left.send(("stop",))
    assert right.receive() == ("stop",)
    left.close()
    with pytest.raises(EOFError):
        right.receive()


def test_the_slot_protocol_from_the_page_process_side() -> None:
    """A page process asks for a slot, waits for the grant, releases with its latency; a wait cancelled before the
    grant says so (the service frees the slot), and a grant that comes after that is ignored."""
    parent, child = (Channel(s) for s in socket.socketpair())
    slots = RemoteSlots(child)
    service = RequestSlots(FixedLimit(1))
    said: list[tuple[Any, ...]] = []

    granted: dict[int, tuple[float, int]] = {}
    cancelled: set[int] = set()
    lock = threading.Lock()

    def grant(rid: int) -> None:
        started = asyncio.run(service.acquire())
        with lock:
            wanted = rid not in cancelled
            if wanted:
                granted[rid] = started
        if wanted:
            slots.granted(rid, *started)
        else:
            service.give_back()

    def serve() -> None:  # the service process's part (PageProcess), by hand
        while True:
            try:
                message = parent.receive()
            except EOFError:
                return
            said.append(message)
            if message[0] == "acquire":
                threading.Thread(target=grant, args=(message[1],)).start()
            elif message[0] == "release":
                with lock:
                    started = granted.pop(message[1])
                service.release(started, message[2], message[3])
            elif message[0] == "cancel":
                with lock:
                    cancelled.add(message[1])
                    taken = granted.pop(message[1], None)
                if taken is not None:
                    service.give_back()

    server = threading.Thread(target=serve)
    server.start()

    async def scenario() -> None:
        started = await asyncio.wait_for(slots.acquire(), 5)
        assert service.in_flight == 1 and len(started) == 3
        waiter = asyncio.create_task(slots.acquire())  # the limit is 1: it waits for the grant
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        slots.release(started, 0.25, "ok")  # the waiting grant now gets the slot, and gives it back
        slots.granted(99, 0.0, 1)  # a grant nobody waits for: ignored
        again = await asyncio.wait_for(slots.acquire(), 5)
        slots.release(again, 0.5, "overload")

    asyncio.run(scenario())
    child.close()
    server.join(5)
    assert [m[0] for m in said] == ["acquire", "acquire", "cancel", "release", "acquire", "release"]
    state = service.state()
    assert state.in_flight == 0
    assert state.requests == {"ok": 1, "overload": 1, "error": 0}  # the cancelled one taught nothing


def test_a_slot_given_back_wakes_the_next_and_teaches_nothing() -> None:
    async def scenario() -> None:
        slots = RequestSlots(FixedLimit(1))
        await slots.acquire()
        waiter = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0.01)
        slots.give_back()
        started = await asyncio.wait_for(waiter, 1)
        assert slots.in_flight == 1
        slots.release(started, 0.1, "ok")
        assert slots.state().requests == {"ok": 1, "overload": 0, "error": 0}

    asyncio.run(scenario())
