"""The garbage collector after start: what the process built while loading is set aside for good.

Loading an engine leaves a heap of long-lived objects (paddle, paddlex, onnxruntime, the models' configuration:
over 300,000 with the VL pipeline). CPython's full collections walk all of them, holding the interpreter lock: one
every 10-20 s under load took 190 ms (``scripts/profile_vl.py``, BENCHMARKS.md "vl-cpu"), a pause every request in
flight shares. None of those objects will become garbage, so once an engine is loaded they are collected once and
then frozen (:func:`gc.freeze`: moved to a generation the collector never walks); what requests allocate later is
collected as before.

:func:`gc_pauses` times every collection (``gc.callbacks``), for ``/metrics``: ``python_gc_pause_seconds`` by
generation, and ``python_gc_frozen_objects``.
"""

from __future__ import annotations

import gc
import itertools
import logging
import threading
import time

log = logging.getLogger(__name__)
_lock = threading.Lock()

#: Upper bounds of the pause histogram, seconds.
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = (0, 1, 2)


class GcPauses:
    """How long each collection held the process, by generation: counts, total seconds and a histogram.

    Its callback runs inside the collector, holding the interpreter lock (collections never overlap), so it takes
    no lock of its own; a scrape may read a collection half counted, which the next scrape completes."""

    def __init__(self) -> None:
        self.counts = [0 for _ in GENERATIONS]
        self.seconds = [0.0 for _ in GENERATIONS]
        self.buckets = [[0 for _ in PAUSE_BUCKETS] for _ in GENERATIONS]  # not cumulative: one bucket per pause
        self._began = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = info.get("generation", 2)
        if generation not in GENERATIONS:
            return
        pause = time.perf_counter() - self._began
        self.counts[generation] += 1
        self.seconds[generation] += pause
        for index, bound in enumerate(PAUSE_BUCKETS):
            if pause <= bound:
                self.buckets[generation][index] += 1
                break

    def cumulative(self, generation: int) -> list[int]:
        """The histogram's buckets as Prometheus counts them (each includes the ones below it)."""
        return list(itertools.accumulate(self.buckets[generation]))


_PAUSES = GcPauses()


def gc_pauses() -> GcPauses:
    """The process's pause record, its callback installed on the first call."""
    with _lock:
        if _PAUSES.callback not in gc.callbacks:
            gc.callbacks.append(_PAUSES.callback)
    return _PAUSES


def freeze_loaded() -> None:
    """Collect once, then freeze everything alive now (called when an engine has loaded; more calls add what is
    new since)."""
    with _lock:
        began = time.perf_counter()
        gc.collect()
        gc.freeze()
        log.info(
            "%d objects set aside from garbage collection (%.0f ms)",
            gc.get_freeze_count(),
            (time.perf_counter() - began) * 1000,
        )
