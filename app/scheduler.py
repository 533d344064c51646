"""A fair, bounded page scheduler: OCR never runs on the event loop.

Pages are submitted under an *owner* (one request or job). A fixed set of worker threads takes the
next page round-robin across owners, so a 300-page document cannot starve a 1-page request: each
waiting owner gets a page in turn. A page may come with a *gate* (its engine's admission, e.g. "the VLM
server has room"): it is taken only when the gate lets it in, and meanwhile waits here, in the fair queue,
not rendered and not holding a worker.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Gate(Protocol):
    """Admission of tasks by the engine that runs them; thread-safe."""

    def try_enter(self) -> bool:
        """Take a place if there is room now (no waiting)."""

    def leave(self) -> None:
        """Give the place back."""

    def on_room(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from any thread, holding no lock) whenever there may be room again."""


Task = tuple[Future[Any], Callable[[], Any], Gate | None]


class PageScheduler:
    """``workers`` threads that run submitted callables, round-robin by owner."""

    def __init__(self, workers: int, name: str = "ocr") -> None:
        self.workers = max(1, workers)
        self._queues: OrderedDict[str, deque[Task]] = OrderedDict()
        self._gates: set[int] = set()  # ids of the gates whose room this scheduler listens for
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, owner: str, fn: Callable[[], T], gate: Gate | None = None) -> Future[T]:
        """Queue ``fn`` for ``owner``, to run once ``gate`` (if any) lets it in; the future carries its
        result or exception."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is shut down")
            self._queues.setdefault(owner, deque()).append((future, fn, gate))
            self._cond.notify()
            listen = gate is not None and id(gate) not in self._gates
            if listen:
                self._gates.add(id(gate))
        if gate is not None and listen:
            gate.on_room(self._wake)
        return future

    def _wake(self) -> None:
        """A gate may have room: one worker looks (and wakes the next if it found some)."""
        with self._cond:
            self._cond.notify()

    @property
    def queued(self) -> int:
        """Pages waiting for a worker."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    @property
    def running(self) -> int:
        return self._running

    def _next(self) -> Task | None:
        """The first owner in line whose next task may run; that owner goes to the back of the line."""
        with self._cond:
            while not self._closed:
                owner = next((owner for owner, queue in self._queues.items() if _admits(queue[0][2])), None)
                if owner is None:
                    self._cond.wait()  # nothing queued, or every gate closed: a submit or a gate wakes us
                    continue
                queue = self._queues[owner]
                task = queue.popleft()
                del self._queues[owner]
                if queue:
                    self._queues[owner] = queue
                self._running += 1
                if task[2] is not None:
                    self._cond.notify()  # pass the word on: the gate may have room for more
                return task
            return None

    def _work(self) -> None:
        while True:
            task = self._next()
            if task is None:
                return
            self._run(task)
            # Nothing of the task stays referenced here while this thread waits for the next one: its callable holds
            # the page (a decoded image, ~6.5 MB for an A4 page at 150 dpi), and each idle worker kept its last one.
            del task

    def _run(self, task: Task) -> None:
        future, fn, gate = task
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
            if gate is not None:
                gate.leave()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop taking work; queued work is cancelled, running work finishes."""
        with self._cond:
            self._closed = True
            pending = [task for queue in self._queues.values() for task in queue]
            self._queues.clear()
            self._cond.notify_all()
        for future, _, _ in pending:
            future.cancel()
        if wait:
            for thread in self._threads:
                thread.join(timeout)


def _admits(gate: Gate | None) -> bool:
    """Whether a task behind ``gate`` may run now (taking its place in the gate if so)."""
    return gate is None or gate.try_enter()
