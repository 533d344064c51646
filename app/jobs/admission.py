"""Admission: whether new work is taken (shutdown, engine state) and whether there is room for it (queue limits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from app.engines.registry import EngineSet
from app.errors import Busy, Unavailable
from app.jobs.models import JobRecord
from app.settings import Settings
from app.storage.disk import DiskMonitor

log = logging.getLogger(__name__)


class Drain:
    """The shutdown state shared by admission, the runner and the waiting requests."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.active = False
        self.started = 0.0  # time.monotonic() when it began
        self.event = asyncio.Event()

    def begin(self) -> bool:
        """Start draining (idempotent; safe from a signal handler on the loop's thread); True the first time."""
        first = not self.active
        if first:
            self.started = time.monotonic()
        self.active = True
        self.event.set()
        return first

    @property
    def deadline(self) -> float:
        """``time.monotonic()`` by which everything must have stopped (``SHUTDOWN_GRACE_S`` after the signal)."""
        return self.started + self.grace_s

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic()) if self.active else self.grace_s


class DrainRate:
    """How fast this replica finishes pages: pages per second over the last ``window`` seconds (event loop only)."""

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self.times: deque[float] = deque()

    def note_page(self) -> None:
        self.times.append(self.clock())
        self._trim(self.times[-1])

    def per_second(self) -> float | None:
        """None until two pages have finished within the window."""
        now = self.clock()
        self._trim(now)
        if len(self.times) < 2:
            return None
        return len(self.times) / max(1.0, now - self.times[0])

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] < now - self.window:
            self.times.popleft()


RETRY_AFTER_UNKNOWN_S = 10
"""Retry-After of a 429 before any page has finished here (no measured rate yet)."""


def retry_after(pages_to_wait_for: float, rate: float | None) -> int:
    """Seconds until ``pages_to_wait_for`` pages are done at ``rate`` pages/s: 1 to 300."""
    if rate is None or rate <= 0:
        return RETRY_AFTER_UNKNOWN_S
    return max(1, min(300, math.ceil(pages_to_wait_for / rate)))


class Admission:
    """Refuses work while shutting down or while the engine is not ready, and keeps the queue within its limits."""

    def __init__(self, settings: Settings, engines: EngineSet, drain: Drain, disk: DiskMonitor | None = None) -> None:
        self.settings = settings
        self.engines = engines
        self.drain = drain
        self.disk = disk  # OUTPUT_DIR's free space and writability (None: not watched, e.g. in-process tests)
        self.reserved_jobs = 0  # places taken by submissions between the capacity check and their start
        self.reserved_pages = 0
        self.rate = DrainRate()

    def check_accepting(self, arrived: float | None = None, engine: str | None = None) -> None:
        """503 while shutting down (except for requests that ``arrived`` — ``time.monotonic()`` — before the drain
        began: they are in flight and get served), 507 while ``OUTPUT_DIR`` is full or not writable, 503 while
        ``engine`` (default: the default engine) is not ready."""
        if self.drain.active and (arrived is None or arrived >= self.drain.started):
            raise Unavailable("shutting_down", "the service is restarting; retry shortly", retry_after=15)
        if self.disk is not None:
            self.disk.check_writable()
        runtime = self.engines.runtimes[engine] if engine else self.engines.default
        if runtime.state == "initializing":
            detail = f": {runtime.engine.detail}" if runtime.engine.detail else ""
            raise Unavailable(
                "engine_initializing",
                f"the OCR engine {runtime.engine.name} is still initialising "
                f"({runtime.elapsed_seconds:.0f} s so far){detail}",
                retry_after=10,
            )
        if runtime.state == "failed":
            raise Unavailable("engine_failed", f"the OCR engine {runtime.engine.name} failed: {runtime.error}")

    @contextlib.contextmanager
    def reserve(self, running: Callable[[], Iterable[JobRecord]], new_pages: int) -> Iterator[None]:
        """Hold a place for a document of ``new_pages`` pages while it is being stored and started.

        429 when ``MAX_QUEUED_JOBS`` documents or ``MAX_QUEUED_PAGES`` pages are already accepted (submissions still
        being stored count too), with ``Retry-After`` from the measured drain rate: the time until the first
        document ends (jobs share the workers evenly), or until enough pages are done.
        """
        unfinished = [r for r in running() if not r.finished]
        jobs = len(unfinished) + self.reserved_jobs
        pages = sum(r.pages_left for r in unfinished) + self.reserved_pages
        if jobs >= self.settings.max_queued_jobs:
            reason = f"{jobs} documents are already queued or running"
            shortest = min((r.pages_left for r in unfinished), default=1)
            wait = float(max(1, shortest) * max(1, len(unfinished)))
        elif pages + new_pages > self.settings.max_queued_pages:
            reason = f"{pages} pages are already waiting; this document adds {new_pages}"
            wait = float(pages + new_pages - self.settings.max_queued_pages)
        else:
            reason = ""
        if reason:
            seconds = retry_after(wait, self.rate.per_second())
            raise Busy("queue_full", f"{reason}; retry later", retry_after=seconds)
        self.reserved_jobs += 1
        self.reserved_pages += new_pages
        try:
            yield
        finally:
            self.reserved_jobs -= 1
            self.reserved_pages -= new_pages

    def room_for_more(self, running: Iterable[JobRecord]) -> bool:
        """Whether to take over another replica's job now: every engine is ready (a replica still loading, or with
        a failed engine, would hold the job while a ready replica could run it, and a crash during loading would
        count against the job) and the queue has room. A busy replica takes it too: the page scheduler shares its
        workers fairly, whereas a job that no replica takes does not move at all."""
        if any(runtime.state != "ready" for runtime in self.engines.runtimes.values()):
            return False
        unfinished = [r for r in running if not r.finished]
        return len(unfinished) + self.reserved_jobs < self.settings.max_queued_jobs
