"""The S3 mirror (Cloud.ru Object Storage): job files and results copied from local disk, in the background.

The service writes a file locally, then records it in the durable outbox (:mod:`app.storage.s3.outbox`) before the
request returns. ``S3_UPLOAD_CONCURRENCY`` uploader threads drain the outbox, one job entry per thread at a time,
in order (``result.json`` last, ``job.json`` after everything). A failure pauses all uploads with exponential
backoff (0.5 s doubling, capped at ``S3_RETRY_MAX_S``); the first success resets it. S3 never fails an OCR
request: the request waits for its result's upload at most ``S3_UPLOAD_WAIT_S`` and not at all while S3 is
failing, then reports ``pending``.

``job.json`` is the one object whose content changes; a ``state_guard`` decides, when its turn comes, whether this
replica may still write it, and ``state_writer`` writes it (the ownership's fenced write: see
:mod:`app.jobs.ownership.records`).
Direct calls (reads, leases, accepting a job) go through :attr:`S3Mirror.objects` (:mod:`app.storage.s3.objects`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from app.settings import Settings
from app.storage.local import result_files
from app.storage.s3.client import apply_step, content_type, make_client
from app.storage.s3.errors import describe_error
from app.storage.s3.keys import KeyLayout
from app.storage.s3.objects import S3Objects
from app.storage.s3.outbox import Entry, Item, Outbox, Step
from app.storage.s3.waiters import ResultWaiters

log = logging.getLogger(__name__)

_BACKOFF_BASE_S = 0.5

S3State = Literal["not_configured", "configured", "degraded"]


@dataclass(frozen=True)
class MirrorHealth:
    """The mirror's state for ``/health`` and ``/metrics`` (memory only)."""

    status: S3State
    bucket: str
    prefix: str
    startup_check: Literal["running", "ok", "failed"]
    pending: int
    pending_results: int
    oldest_pending_s: float | None
    uploaded: int
    failures: int
    last_upload_at: str | None
    last_error: dict[str, str] | None
    conditional_writes: str


class S3Mirror:
    """Mirrors job state and results to one bucket; reads them back for replicas that lack them.

    ``start()`` (call it off the event loop) loads the outbox and starts the threads; the client is created
    and the bucket checked in the background. ``health()`` and ``result_pending()`` only read memory.
    """

    def __init__(self, settings: Settings, root: Path, state_guard: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self.root = root
        self.bucket = settings.cloudru_s3_bucket
        self.layout = KeyLayout(settings.cloudru_s3_prefix)
        self.outbox = Outbox(root / ".outbox", root, state_guard)
        self._secrets = [
            s
            for s in (
                settings.cloudru_s3_secret_key.get_secret_value(),
                settings.cloudru_s3_access_key.get_secret_value(),
            )
            if s
        ]
        self.objects = S3Objects(settings, self._secrets, self._note_error, self._direct_call_worked)
        #: Writes ``job.json`` (job id, body) instead of a plain upload: the job store's fenced write, which returns
        #: False when the record is no longer this replica's to write (then it is dropped). None: plain uploads.
        self.state_writer: Callable[[str, bytes], bool] | None = None
        self._client: Any = None
        self._client_ready = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._waiters = ResultWaiters()  # requests waiting for a job's result.json
        self._stored_waiters = ResultWaiters()  # requests waiting for all of a job's uploads (job.json last)
        self._in_flight: dict[int, float] = {}  # uploader thread -> when its current PUT began
        # Health, written by the uploader threads, read lock-free by /health.
        self.last_ok: bool | None = None
        self.last_error: dict[str, str] | None = None
        self.last_upload_at: str | None = None
        self.startup_check: Literal["running", "ok", "failed"] = "running"
        self.uploaded = 0
        self.failures = 0
        self._consecutive_failures = 0
        self._paused_until = 0.0
        self._health_lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the outbox (entries of an earlier run resume) and start the setup and uploader threads."""
        resumed = self.outbox.load()
        if resumed:
            log.info("S3 mirror: %d pending upload(s) resumed from the outbox", resumed)
        setup = threading.Thread(target=self._setup, name="s3-setup", daemon=True)
        self._threads.append(setup)
        for n in range(self.settings.s3_upload_concurrency):
            self._threads.append(threading.Thread(target=self._upload_loop, name=f"s3-upload-{n}", daemon=True))
        for thread in self._threads:
            thread.start()

    def flush(self, timeout: float) -> bool:
        """Upload what is pending now, waiting at most ``timeout`` s (at shutdown); True when nothing is left."""
        deadline = time.monotonic() + timeout
        with self.outbox.cond:
            self._paused_until = 0.0
            self.outbox.retry_now()
        while self.outbox.entries and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.outbox.entries

    def pending(self, job_id: str) -> bool:
        """Whether the job still has files waiting for upload (lock-free)."""
        return job_id in self.outbox.entries

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads (uploads in flight get ``timeout`` seconds); what is left stays in the outbox (logged)."""
        left = self.outbox.summary()
        if left:
            log.warning(
                "S3 mirror: stopping with uploads left in the outbox (%s); they resume at the next start "
                "on this disk, else the next replica redoes that work",
                left,
            )
        self._stopping.set()
        self._client_ready.set()
        with self.outbox.cond:
            self.outbox.cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._stop_waiting()

    def _setup(self) -> None:
        """Create the client (retrying with backoff), then check the bucket and the credentials, each try
        within ``S3_CONNECT_TIMEOUT_S + S3_READ_TIMEOUT_S``; a failure is reported and retried with backoff."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                self._client = make_client(self.settings)
                break
            except Exception as exc:  # a bad endpoint or CA path: reported, retried
                attempt += 1
                self._record_failure(exc, "creating the S3 client")
                self._stopping.wait(self._backoff(attempt))
        self._client_ready.set()
        if self._client is None:
            return
        attempt = 0
        while not self._stopping.is_set():
            error = self._check_bucket()
            if error is None:
                self.startup_check = "ok"
                self._record_success(uploaded=False)
                with self.outbox.cond:  # what failed before need not wait for its retry time
                    self.outbox.retry_now()
                log.info("S3 mirror ready: bucket %s reachable", self.bucket)
                return
            self.startup_check = "failed"
            attempt += 1
            self._record_failure(error, f"checking bucket {self.bucket}")
            self._stopping.wait(self._backoff(attempt))  # again until it passes: /health recovers without traffic

    def _check_bucket(self) -> Exception | None:
        """List one key under the prefix (not HeadBucket: a listing's errors have a body, e.g.
        SignatureDoesNotMatch or NoSuchBucket); the error, or None. A hanging S3 is a TimeoutError."""
        outcome: list[Exception | None] = []

        def check() -> None:
            try:
                self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.layout.key(""), MaxKeys=1)
                outcome.append(None)
            except Exception as exc:
                outcome.append(exc)

        checker = threading.Thread(target=check, name="s3-check", daemon=True)
        checker.start()
        limit = self.settings.s3_connect_timeout_s + self.settings.s3_read_timeout_s
        checker.join(limit)
        return outcome[0] if outcome else TimeoutError(f"no answer from S3 within {limit:.0f} s")

    # --- recording what to upload (service threads) ---------------------------------------------
    def job_state(self, job_id: str, path: Path) -> None:
        """Mirror the job's ``job.json`` (its content when its turn comes)."""
        item = Item(self._relative(path), self.layout.job(job_id), "application/json")
        self.outbox.add(job_id, job_state=item)

    def page(self, job_id: str, number: int, path: Path) -> None:
        item = Item(self._relative(path), self.layout.page(job_id, number), "application/json")
        self.outbox.add(job_id, [item])

    def result(self, job_id: str, result_dir: str) -> list[str]:
        """Mirror the result folder ``OUTPUT_DIR/<result_dir>``; returns its keys (``result.json`` last)."""
        folder = self.root / result_dir
        names = result_files(folder)
        items = [
            Item(
                f"{result_dir}/{name}", self.layout.result(result_dir, name), content_type(name), name == "result.json"
            )
            for name in names
        ]
        self.outbox.add(job_id, items, result=True)
        return [i.key for i in items]

    # --- waiting and status (event loop; lock-free or a short private lock) -------------------------
    def result_pending(self, job_id: str) -> bool:
        return self.outbox.result_pending(job_id)

    async def wait_result(self, job_id: str, timeout: float) -> bool:
        """True once the job's result is in S3; False after ``timeout`` s, or at once while S3 is failing
        (the last operation failed, or an upload has been hanging for longer than ``timeout``)."""
        return await self._wait(self._waiters, self.result_pending, job_id, timeout)

    async def wait_stored(self, job_id: str, timeout: float) -> bool:
        """True once nothing of the job waits for upload: its final ``job.json``, the last, is in S3, so every
        replica answers with the finished job. False as :meth:`wait_result`."""
        return await self._wait(self._stored_waiters, self.pending, job_id, timeout)

    async def _wait(self, waiters: ResultWaiters, pending: Callable[[str], bool], job_id: str, timeout: float) -> bool:
        if not pending(job_id):
            return True
        if self.last_ok is False or timeout <= 0 or self._hanging_longer_than(timeout):
            return False
        future = waiters.add(job_id)
        if not pending(job_id):  # uploaded between the first check and the registration
            waiters.forget(job_id, future)
            return True
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            waiters.forget(job_id, future)

    def _stop_waiting(self) -> None:
        """Every request waiting for an upload gets "not uploaded" now."""
        self._waiters.resolve_all(False)
        self._stored_waiters.resolve_all(False)

    def _hanging_longer_than(self, seconds: float) -> bool:
        began = list(self._in_flight.values())
        return bool(began) and time.monotonic() - min(began) > seconds

    @property
    def state(self) -> S3State:
        return "degraded" if self.last_ok is False else "configured"

    def health(self) -> MirrorHealth:
        """The ``/health`` details: pending uploads, the age of the oldest, the last error (no secrets)."""
        entries, results, oldest = self.outbox.stats
        return MirrorHealth(
            status=self.state,
            bucket=self.bucket,
            prefix=self.layout.prefix,
            startup_check=self.startup_check,
            pending=entries,
            pending_results=results,
            oldest_pending_s=round(time.time() - oldest, 1) if oldest is not None else None,
            uploaded=self.uploaded,
            failures=self.failures,
            last_upload_at=self.last_upload_at,
            last_error=self.last_error,
            conditional_writes=self.objects.conditions,
        )

    # --- uploading (uploader threads) -------------------------------------------------------------
    def _upload_loop(self) -> None:
        self._client_ready.wait()
        cond = self.outbox.cond
        while not self._stopping.is_set():
            with cond:
                now = time.monotonic()
                entry = self.outbox.claim(now) if now >= self._paused_until else None
                if entry is None:
                    due = self.outbox.next_due()
                    wake = max(self._paused_until, due) if due is not None else None
                    cond.wait(None if wake is None else max(0.01, wake - now))
                    continue
            self._upload_entry(entry)

    def _upload_entry(self, entry: Entry) -> None:
        """Upload the entry's steps in order until it is empty, a step fails, or uploads are paused."""
        cond = self.outbox.cond
        while True:
            with cond:
                if self._stopping.is_set() or time.monotonic() < self._paused_until:
                    self.outbox.release(entry)
                    cond.notify()
                    return
                step = self.outbox.next_step(entry)
                if step is None:  # the entry is gone: nothing of the job is pending
                    self._stored_waiters.resolve(entry.job_id, True)
                    return
            try:
                uploaded = self._put(step, entry.job_id)
            except Exception as exc:
                retry_in = self._record_failure(exc, f"uploading {step.item.key}")
                with cond:
                    self.outbox.failed(entry, step, time.monotonic() + retry_in)
                    cond.notify_all()
                self._stop_waiting()  # sync requests stop waiting: their results are pending
                return
            with cond:
                self.outbox.done(entry, step)
            if uploaded:
                self._record_success()
            if step.item.completes_result:
                self._waiters.resolve(entry.job_id, True)

    def _put(self, step: Step, job_id: str) -> bool:
        """Carry out one step (:func:`~app.storage.s3.client.apply_step`, or the fenced write of ``job.json``); True
        when an object was uploaded."""
        thread = threading.get_ident()
        self._in_flight[thread] = time.monotonic()
        try:
            if step.body is not None and self.state_writer is not None:
                return self.state_writer(job_id, step.body)
            return apply_step(self._client, self.bucket, self.root, step.item, step.body)
        finally:
            self._in_flight.pop(thread, None)

    def _record_success(self, uploaded: bool = True) -> None:
        """S3 answered: healthy again, uploads no longer paused."""
        with self._health_lock:
            if self.last_ok is False:
                log.info("S3 mirror: S3 works again")
            self.last_ok = True
            if uploaded:
                self.uploaded += 1
                self.last_upload_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._consecutive_failures = 0
            self._paused_until = 0.0
        self.objects.failed_at = -1e9  # S3 answers: new jobs need not be refused on an older failure

    def _note_error(self, error: dict[str, str]) -> None:
        """A direct call failed (see :class:`S3Objects`): ``degraded`` in /health until a call works again."""
        with self._health_lock:
            if self.last_ok is not False:
                log.warning("S3: a direct call failed: %s: %s", error["type"], error["message"])
            self.last_ok = False
            self.last_error = {**error, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def _direct_call_worked(self) -> None:
        """A direct call worked after a failure: S3 is back, so the paused uploads resume now, not at their backoff."""
        self._record_success(uploaded=False)
        with self.outbox.cond:
            self.outbox.retry_now()

    def _record_failure(self, exc: BaseException, doing: str) -> float:
        """Remember the error for /health, log it, pause all uploads; returns the pause in seconds."""
        error = self.describe(exc)
        error["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._health_lock:
            self.failures += 1
            now = time.monotonic()
            if now >= self._paused_until:  # one step per round: uploads failing together in one round count once
                self._consecutive_failures += 1
                self._paused_until = now + self._backoff(self._consecutive_failures)
            pause = self._paused_until - now
            self.last_ok = False
            self.last_error = error
        log.warning("S3 mirror: %s failed: %s: %s; retrying in %.1f s", doing, error["type"], error["message"], pause)
        self.objects.note_failure(f"S3 storage could not be used ({doing}): {error['type']}: {error['message']}")
        return pause

    def _backoff(self, failures: int) -> float:
        return float(min(self.settings.s3_retry_max_s, _BACKOFF_BASE_S * 2 ** min(failures - 1, 20)))

    def describe(self, exc: BaseException) -> dict[str, str]:
        """``{"type", "message"}`` of an error with the key values removed, for /health and the logs."""
        return describe_error(exc, self._secrets)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
