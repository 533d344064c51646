"""The garbage collector after start: what the process built while loading is set aside for good.

Loading an engine leaves a heap of long-lived objects (paddle, paddlex, onnxruntime, the models' configuration:
about a million with the VL pipeline). CPython's full collections walk all of them, holding the interpreter lock:
170 ms every ten seconds or so under a burst of pages (measured with ``gc.callbacks`` in the service,
BENCHMARKS.md "vl-cpu"), a pause every request in flight shares. None of those objects will become garbage, so
once an engine is loaded they are collected once and then frozen (:func:`gc.freeze`: moved to a generation the
collector never walks); what requests allocate later is collected as before.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

log = logging.getLogger(__name__)
_lock = threading.Lock()


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
