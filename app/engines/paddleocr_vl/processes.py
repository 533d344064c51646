"""Page processes: with a VLM server, pages are turned into VLM requests, sent and read back by helper processes
(``VL_PAGE_PROCESSES``), while the service process keeps the HTTP side, the jobs and the request limit.

Why. A page on its way to the VLM server costs ~15 ms of Python in paddlex and the OpenAI client (cropping,
encoding, building and parsing the request), and all of it holds the interpreter lock. With the HTTP side, the job
records and the decoding of the page in the same process, one process prepared at most ~30 pages/s (a 64-request
burst needed 2 s to reach the server), and the second core stayed partly idle (BENCHMARKS.md, vl-cpu).

How. Each page process (:mod:`.page_process`) is a ``python -m app.engines.paddleocr_vl.page_process`` child with
its own paddlex pipeline, started when the engine loads, talking over a socket pair. The service process decodes
the page, makes its BGR array (:func:`app.engines.pixels.bgr_array`) and sends the array to the process with the
fewest pages; the answer comes back as the engine's pages, or as the engine error to raise.

The request limit and the credential stay in the service process (one :class:`~.slots.RequestSlots`, its page
gate, the fleet and the server's metrics; the IAM token). A page process asks for a slot before each VLM request
(``acquire``), waits for the ``grant`` and reports the request's latency and outcome (``release``), so the limit
learns from every request of every process as before. The grant carries the bearer value to send; a process that
needs a new one (none cached, or after a 401) asks the service (``token``), which exchanges it with IAM once for
all of them. A process that exits (a crash, the OOM killer) gives its slots back; its pages are sent once more to
another process (a page is idempotent) and it is started again. A page process ends when its socket closes, so a
killed service leaves none behind.

Messages are pickled tuples; a page's arrays follow its message as raw bytes (:mod:`.channel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.engines import errors as engine_errors
from app.engines.base import EngineLoadError, EnginePage
from app.engines.paddleocr_vl.auth import VlmAuthError, VlmCredentials
from app.engines.paddleocr_vl.channel import Channel, engine_error
from app.engines.paddleocr_vl.slots import RequestSlots
from app.engines.paddleocr_vl.status import ProcessesState
from app.settings import Settings

log = logging.getLogger("app.engines.paddleocr_vl")

#: Seconds a page waits for a ready page process (all of them restarting) before it fails.
READY_WAIT_S = 120.0
#: Seconds a page process has to stop after ``stop`` before it is killed.
STOP_WAIT_S = 5.0
#: A process that exits while loading is started again after this many seconds, doubled at each further failure
#: up to :data:`RESTART_MAX_S` (one that keeps failing is not spun); one that exits after it was ready, at once.
RESTART_EVERY_S = 5.0
RESTART_MAX_S = 60.0
_ROOT = Path(__file__).resolve().parents[3]  # the folder holding the ``app`` package


class PageProcessLost(Exception):
    """The page process running a page exited before answering."""


@dataclass
class _Page:
    done: threading.Event = field(default_factory=threading.Event)
    pages: list[EnginePage] | None = None
    error: BaseException | None = None


class PageProcess:
    """One page process, seen from the service process."""

    def __init__(self, owner: PageProcesses, index: int) -> None:
        self.owner = owner
        self.index = index
        self.ready = False
        self.failure: str | None = None  # why it could not load
        self.info: dict[str, Any] = {}
        self.started = threading.Event()  # ready or failed
        self.pages: dict[int, _Page] = {}
        self.answered = 0  # pages answered (done or failed)
        self._lock = threading.Lock()  # pages, acquiring, granted
        self._acquiring: dict[int, Future[None]] = {}
        self._granted: dict[int, tuple[float, int]] = {}
        self._closed = False
        parent, child = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "app.engines.paddleocr_vl.page_process", str(child.fileno())]
        self.process = subprocess.Popen(command, pass_fds=(child.fileno(),), env=env, cwd=str(_ROOT))
        child.close()
        self.channel = Channel(parent)
        credentials = owner.credentials
        self.send(("init", owner.settings, owner.model, index, credentials.mode, credentials.refreshable))
        self._reader = threading.Thread(target=self._read, name=f"vl-pages-{index}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def load(self) -> int:
        return len(self.pages)

    def send(self, message: tuple[Any, ...], *arrays: np.ndarray) -> None:
        self.channel.send(message, *arrays)

    def run(self, arrays: Sequence[np.ndarray]) -> list[EnginePage]:
        """The pages through this process: its answer, or its engine error raised; :class:`PageProcessLost` when it
        exits first."""
        page = self._submit(arrays)
        page.done.wait()
        if page.error is not None:
            raise page.error
        assert page.pages is not None
        return page.pages

    def _submit(self, arrays: Sequence[np.ndarray]) -> _Page:
        page = _Page()
        page_id = next(self.owner.ids)
        with self._lock:
            if self._closed:
                raise PageProcessLost(f"page process {self.index} has exited")
            self.pages[page_id] = page
        try:
            self.send(("page", page_id, [array.shape for array in arrays]), *arrays)
        except OSError as exc:
            with self._lock:
                self.pages.pop(page_id, None)
            raise PageProcessLost(f"page process {self.index}: {exc}") from exc
        return page

    # --- what the process says ---------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                self._handle(self.channel.receive())
        except (EOFError, OSError):
            pass
        except Exception:  # a message that cannot be read: the process is dropped and started again
            log.exception("paddleocr-vl: page process %d sent a message that cannot be read", self.index)
        self._lost()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("done", "error", "ready", "failed"):
            self._answer(message)
        elif kind == "acquire":
            rid = message[1]
            with self._lock:
                self._acquiring[rid] = self.owner.run(self._grant(rid))
        elif kind == "release":
            _, rid, rtt, outcome = message
            with self._lock:
                started = self._granted.pop(rid, None)
            if started is not None:  # None: given back already
                self.owner.slots.release(started, rtt, outcome)
        elif kind == "cancel":
            with self._lock:
                waiting = self._acquiring.pop(message[1], None)
                granted = self._granted.pop(message[1], None)
            if granted is not None:
                self.owner.slots.give_back()
            elif waiting is not None:
                waiting.cancel()
        elif kind == "retry":
            self.owner.slots.count_retry()
        elif kind == "token":
            threading.Thread(target=self._token, args=message[1:], name="vl-pages-token", daemon=True).start()

    def _answer(self, message: tuple[Any, ...]) -> None:
        """A page's answer, or the answer to loading."""
        kind = message[0]
        if kind in ("done", "error"):
            with self._lock:
                page = self.pages.pop(message[1], None)
                self.answered += 1
            if page is not None:
                if kind == "done":
                    page.pages = message[2]
                else:
                    page.error = engine_error(*message[2:])
                page.done.set()
        elif kind == "ready":
            self.info = message[1]
            self.ready = True
            self.started.set()
            self.owner.changed()
        elif kind == "failed":
            self.failure = message[1]
            self.started.set()

    def _token(self, query: int, renew: bool, rejected: str | None) -> None:
        """A bearer value for the process: a token (exchanged if due), or one renewed after a 401 to ``rejected``."""
        credentials = self.owner.credentials
        try:
            value = credentials.renew_after_rejection(rejected) if renew else credentials.token()
            answer: tuple[Any, ...] = ("token", query, value, None, False)
        except VlmAuthError as exc:
            answer = ("token", query, None, str(exc), exc.refused)
        with contextlib.suppress(OSError):
            self.send(answer)

    async def _grant(self, rid: int) -> None:
        """A slot of the service's limit for one VLM request of this process."""
        started = await self.owner.slots.acquire()
        with self._lock:
            wanted = self._acquiring.pop(rid, None) is not None and not self._closed
            if wanted:
                self._granted[rid] = started
        if not wanted:
            self.owner.slots.give_back()
            return
        with contextlib.suppress(OSError):  # the process is gone: _lost gives the slot back
            self.send(("grant", rid, *started, self.owner.credentials.cached()))

    def _lost(self) -> None:
        """The process has exited (or its socket broke): its slots back, its pages failed (to be sent again)."""
        with self._lock:
            self._closed = True
            pages, self.pages = self.pages, {}
            acquiring, self._acquiring = self._acquiring, {}
            granted, self._granted = self._granted, {}
        self.ready = False
        for waiting in acquiring.values():
            waiting.cancel()
        for _ in granted:
            self.owner.slots.give_back()
        code = self._exit_code()
        for page in pages.values():
            page.error = PageProcessLost(f"page process {self.index} exited (code {code})")
            page.done.set()
        if self.failure is None:
            self.failure = f"exited (code {code}) while loading"
        self.started.set()
        self.channel.close()
        self.owner.lost(self)

    def _exit_code(self) -> int | None:
        try:
            return self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def stop(self) -> None:
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self.send(("stop",))
        try:
            self.process.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class PageProcesses:
    """``count`` page processes sharing the service's request ``slots``."""

    def __init__(
        self, count: int, settings: Settings, model: str | None, slots: RequestSlots, credentials: VlmCredentials
    ) -> None:
        self.count = count
        self.credentials = credentials
        self.settings = settings
        self.model = model
        self.slots = slots
        self.ids = itertools.count(1)
        self.processes: list[PageProcess] = []
        self.restarts = 0
        self._closing = threading.Event()
        self._running = False  # all started once: a process lost from now on is started again
        self._failures: dict[int, int] = {}  # failed starts in a row, by process index
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="vl-slots", daemon=True)
        self._loop_thread.start()

    def run(self, coroutine: Any) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def start(self, stop: threading.Event) -> None:
        """Start every process and wait until all are ready; :class:`EngineLoadError` with the first failure."""
        self.processes = [PageProcess(self, index) for index in range(self.count)]
        try:
            for process in self.processes:
                while not process.started.wait(0.5):
                    if stop.is_set():
                        raise EngineLoadError("stopped while initialising")
                if not process.ready:
                    raise EngineLoadError(process.failure or "a page process failed to load")
        except EngineLoadError:
            self.close()
            raise
        self._running = True
        log.info(
            "paddleocr-vl: %d page processes ready (pids %s)",
            self.count,
            ", ".join(str(p.pid) for p in self.processes),
        )

    def state(self) -> ProcessesState:
        return ProcessesState(self.count, sum(1 for p in self.processes if p.ready), self.restarts)

    def changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def lost(self, process: PageProcess) -> None:
        """Start ``process`` again (unless the engine is closing): at once if it had been ready, else after a wait
        that doubles with each failure in a row (:data:`RESTART_EVERY_S`)."""
        self.changed()
        if self._closing.is_set() or not self._running or process not in self.processes:
            return
        failures = 0 if process.info else self._failures.get(process.index, 0) + 1
        self._failures[process.index] = failures
        wait = 0.0 if not failures else min(RESTART_MAX_S, RESTART_EVERY_S * 2 ** (failures - 1))
        why = "exited" if process.info else process.failure
        log.warning(
            "paddleocr-vl: page process %d (pid %d) %s; starting it again in %.0f s",
            process.index,
            process.pid,
            why,
            wait,
        )
        threading.Thread(target=self._restart, args=(process, wait), name="vl-pages-restart", daemon=True).start()

    def _restart(self, old: PageProcess, wait: float) -> None:
        if self._closing.wait(wait):
            return
        new = PageProcess(self, old.index)
        self.restarts += 1
        self.processes = [new if p is old else p for p in self.processes]
        if self._closing.is_set():
            new.stop()

    def _pick(self) -> PageProcess:
        """The ready process with the fewest pages (waiting for one, all of them restarting)."""
        deadline = time.monotonic() + READY_WAIT_S
        with self._changed:
            while True:
                ready = [p for p in self.processes if p.ready]
                if ready:
                    return min(ready, key=lambda p: p.load)
                left = deadline - time.monotonic()
                if left <= 0 or self._closing.is_set():
                    raise engine_errors.VlmUnavailable("no page process is ready (they are starting again)")
                self._changed.wait(min(left, 1.0))

    def recognize(self, arrays: Sequence[np.ndarray]) -> list[EnginePage]:
        """The pages through one process; sent once more to another if that one exits before answering."""
        try:
            return self._pick().run(arrays)
        except PageProcessLost as exc:
            log.warning("paddleocr-vl: %s; the page is sent to another", exc)
        try:
            return self._pick().run(arrays)
        except PageProcessLost as exc:
            raise engine_errors.VlmUnavailable(str(exc)) from exc

    def close(self) -> None:
        self._closing.set()
        self.changed()
        for process in list(self.processes):
            process.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
