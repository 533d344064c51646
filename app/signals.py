"""SIGTERM and SIGINT stay with the service after an engine library has taken them.

PaddlePaddle, when it is imported (the paddleocr-vl engine imports it while loading), installs C-level
handlers for SIGTERM and others: on SIGTERM it prints a "FatalError: `Termination signal` is detected"
report and ends the process (exit 143) at once, so the graceful shutdown (stop taking work, let pages
finish, exit 0) never runs. Once the engines have loaded, the Python-level handlers are installed again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The signals the service shuts down on.
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def reinstall_handlers() -> bool:
    """Install the current Python-level handlers of SIGTERM and SIGINT again at the C level (main thread
    only; elsewhere nothing happens). Returns whether it did."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in SHUTDOWN_SIGNALS:
        handler = signal.getsignal(sig)
        if handler is not None:  # None: installed from C, not by Python; leave it
            signal.signal(sig, handler)
    return True


async def reclaim_after_loading(loading: Callable[[], bool], poll_s: float = 1.0) -> None:
    """Wait while ``loading()`` is true (engines initialising), then :func:`reinstall_handlers`.

    Runs as a task on the event loop, which uvicorn runs on the main thread.
    """
    while True:
        if not loading():
            break
        await asyncio.sleep(poll_s)
    if reinstall_handlers():
        log.debug("SIGTERM and SIGINT handlers installed again after the engines loaded")
