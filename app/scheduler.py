"""A fair, bounded page scheduler: OCR never runs on the event loop.

Pages are submitted under an *owner* (one request or job). A fixed set of worker threads takes the
next page round-robin across owners, so a 300-page document cannot starve a 1-page request: each
waiting owner gets a page in turn.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class PageScheduler:
    """``workers`` threads that run submitted callables, round-robin by owner."""

    def __init__(self, workers: int, name: str = "ocr") -> None:
        self.workers = max(1, workers)
        self._queues: OrderedDict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: str, fn: Callable[[], T]) -> Future[T]:
        """Queue ``fn`` for ``owner``; the future carries its result or exception."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is shut down")
            self._queues.setdefault(owner, deque()).append((future, fn))
            self._cond.notify()
        return future

    @property
    def queued(self) -> int:
        """Pages waiting for a worker."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    @property
    def running(self) -> int:
        return self._running

    def _next(self) -> tuple[Future[Any], Callable[[], Any]] | None:
        with self._cond:
            while not self._queues and not self._closed:
                self._cond.wait()
            if not self._queues:
                return None
            owner, queue = next(iter(self._queues.items()))
            task = queue.popleft()
            # Round-robin: this owner goes to the back of the line (or leaves it when done).
            del self._queues[owner]
            if queue:
                self._queues[owner] = queue
            self._running += 1
            return task

    def _work(self) -> None:
        while True:
            task = self._next()
            if task is None:
                return
            future, fn = task
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn()
                    except BaseException as exc:  # handed to the waiter, who decides
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._cond:
                    self._running -= 1

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking work; queued work is cancelled, running work finishes."""
        with self._cond:
            self._closed = True
            pending = [task for queue in self._queues.values() for task in queue]
            self._queues.clear()
            self._cond.notify_all()
        for future, _ in pending:
            future.cancel()
        if wait:
            for thread in self._threads:
                thread.join(timeout)
