"""Futures that requests wait on until a job's uploads reach S3 (see :meth:`S3Mirror.wait_result` and
:meth:`S3Mirror.wait_stored`)."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future


class ResultWaiters:
    """Per job, the futures of the requests waiting for an upload of it (its result, or all of it). Thread-safe."""

    def __init__(self) -> None:
        self._futures: dict[str, list[Future[bool]]] = {}
        self._lock = threading.Lock()

    def add(self, job_id: str) -> Future[bool]:
        """A new future for ``job_id``, resolved by :meth:`resolve`; call :meth:`forget` when done with it."""
        future: Future[bool] = Future()
        with self._lock:
            self._futures.setdefault(job_id, []).append(future)
        return future

    def forget(self, job_id: str, future: Future[bool]) -> None:
        with self._lock:
            waiting = self._futures.get(job_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._futures.pop(job_id, None)

    def resolve(self, job_id: str, uploaded: bool) -> None:
        """Answer every request waiting for ``job_id``: ``uploaded`` or not."""
        with self._lock:
            futures = self._futures.pop(job_id, [])
        for future in futures:
            with contextlib.suppress(Exception):  # already cancelled by a waiter's timeout
                future.set_result(uploaded)

    def resolve_all(self, uploaded: bool) -> None:
        with self._lock:
            job_ids = list(self._futures)
        for job_id in job_ids:
            self.resolve(job_id, uploaded)
