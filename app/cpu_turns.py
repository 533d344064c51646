"""Turns on the CPU for the heavy steps of a page (decoding it, converting it, building its VLM request), oldest
page first.

When many pages arrive at once (a burst of one-page requests, a fresh replica meeting its first clients), letting
every worker thread decode at the same time shares the cores among all of them: every page then finishes its
preparation only when the last one does, and the whole burst reaches the VLM server late (measured: 16 A4 pages
sent 0.6-0.9 s after they arrived, all within a few ms of each other). With at most one page per usable core in
these steps, the page that began first served first, the first pages reach the server after their own preparation
and the others follow one by one: the same CPU in all, about half the mean wait, and the server busy sooner.

A page's place in the queue is when its work began (:func:`page_began`), so a page that has already been decoded
gets its next step before a page that has not started. Only CPU-bound steps run inside a turn, never a wait on the
network, the disk or the VLM; a turn held while a request is built is given back by the VLM transport the moment
the request leaves (:func:`request_leaving`), in whichever thread that happens.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterator


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


class Turn:
    """One place among a :class:`CpuTurns`' ``size``; :meth:`release` gives it back (once; later calls do nothing)."""

    def __init__(self, owner: CpuTurns) -> None:
        self._owner = owner
        self._released = False
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._owner._leave()

    @contextlib.contextmanager
    def until_request_leaves(self) -> Iterator[None]:
        """Within the block, :func:`request_leaving` (from this context or one copied from it, such as a coroutine
        scheduled on another thread's loop) gives this turn back."""
        token = _held.set(self)
        try:
            yield
        finally:
            _held.reset(token)


class CpuTurns:
    """At most ``size`` holders at a time; the others wait, the earliest :func:`page_began` first."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._lock = threading.Lock()
        self._inside = 0
        self._order = itertools.count()  # ties: first asked, first served
        self._waiting: list[tuple[float, int, threading.Event]] = []

    def take(self) -> Turn:
        """Wait for a place and hold it until :meth:`Turn.release`."""
        since = _since.get()
        with self._lock:
            if self._inside < self.size and not self._waiting:
                self._inside += 1
                return Turn(self)
            ticket = threading.Event()
            heapq.heappush(self._waiting, (time.monotonic() if since is None else since, next(self._order), ticket))
        ticket.wait()  # :meth:`_leave` handed its place to this ticket (``_inside`` unchanged)
        return Turn(self)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold a place for the ``with`` block."""
        held = self.take()
        try:
            yield
        finally:
            held.release()

    def _leave(self) -> None:
        with self._lock:
            if self._waiting:
                heapq.heappop(self._waiting)[2].set()  # the place passes on directly: nobody jumps the queue
            else:
                self._inside -= 1

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)


_since: contextvars.ContextVar[float | None] = contextvars.ContextVar("page_since", default=None)
_held: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("cpu_turn_held", default=None)


@contextlib.contextmanager
def page_began(at: float | None = None) -> Iterator[None]:
    """Within the block, turns are queued by ``at`` (``time.monotonic()``; now if not given)."""
    token = _since.set(time.monotonic() if at is None else at)
    try:
        yield
    finally:
        _since.reset(token)


def request_leaving() -> None:
    """Called by the VLM transport as a request is sent: the turn its page held while building it is free."""
    held = _held.get()
    if held is not None:
        held.release()


#: The process's turns for page preparation, one per usable core.
page_preparation = CpuTurns(usable_cores())
