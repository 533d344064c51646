"""app.heap: what exists when an engine has loaded is frozen out of the collector's walks; later garbage is not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from app.heap import GENERATIONS, freeze_loaded, gc_pauses


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def cycle() -> weakref.ref[Node]:
    """A reference cycle nothing else holds: only the collector can free it."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


def test_what_is_alive_at_load_is_frozen_and_garbage_from_before_is_freed_first() -> None:
    before = cycle()
    kept = Node()
    freeze_loaded()
    assert before() is None  # collected, not frozen with the rest
    assert gc.get_freeze_count() > 0
    assert not any(item is kept for item in gc.get_objects(generation=2))  # set aside, not in the oldest generation


def test_garbage_made_after_the_freeze_is_still_collected() -> None:
    freeze_loaded()
    frozen = gc.get_freeze_count()
    later = cycle()
    gc.collect()
    assert later() is None
    assert gc.get_freeze_count() >= frozen


def test_a_full_collection_after_the_freeze_walks_only_what_came_later() -> None:
    heap = [[Node() for _ in range(10)] for _ in range(20_000)]  # a loaded engine's long-lived objects
    gc.collect()
    assert len(gc.get_objects(generation=2)) > 220_000  # without the freeze, every full collection walks them
    freeze_loaded()
    gc.collect()
    assert len(gc.get_objects(generation=2)) < 20_000
    assert len(heap) == 20_000


def test_each_collection_is_timed_by_generation() -> None:
    pauses = gc_pauses()
    before = list(pauses.counts), list(pauses.seconds)
    gc.collect(0)
    gc.collect()
    assert pauses.counts[0] >= before[0][0] + 1
    assert pauses.counts[2] >= before[0][2] + 1
    assert pauses.seconds[2] > before[1][2]
    for generation in GENERATIONS:  # every pause falls in one bucket (or above the last bound)
        assert pauses.cumulative(generation)[-1] <= pauses.counts[generation]
        assert pauses.cumulative(generation) == sorted(pauses.cumulative(generation))
    assert gc.callbacks.count(pauses.callback) == 1
    gc_pauses()
    assert gc.callbacks.count(pauses.callback) == 1  # installed once
