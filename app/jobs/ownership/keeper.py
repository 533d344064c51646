"""The thread that keeps a replica's job leases alive and watches the others' (see :mod:`app.jobs.ownership.leases`).

It checks once whether the bucket enforces conditional writes, then: renews the held leases every
``JOB_LEASE_S / 3`` (every second after a failed round, so that an owner renews as soon as S3 is back), hands back
leases of jobs that run nowhere here, observes the leases of every replica every ``min(JOB_SCAN_INTERVAL_S,
JOB_LEASE_S / 3)``, notes cancel requests made through other replicas and ends the leases of jobs whose last upload
is through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from app.jobs.ownership.leases import LeaseBook
from app.storage.s3.errors import S3Unavailable

log = logging.getLogger(__name__)

_TICK_S = 1.0
_CANCEL_CHECK_S = 2.0


class LeaseKeeper:
    def __init__(self, leases: LeaseBook, lease_s: float, scan_s: float, pending: Callable[[str], bool]) -> None:
        self.leases = leases
        self.renew_every = lease_s / 3
        self.observe_every = min(scan_s, lease_s / 3)
        self.pending = pending
        #: The jobs that run on this replica now (set by the service); None: unknown, no lease is handed back.
        self.running: Callable[[], Collection[str]] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="job-leases", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the thread ends at its next wake-up; the leases stay as they are)."""
        self._stopping.set()

    def _detect(self) -> None:
        while not self._stopping.is_set():
            try:
                state = self.leases.bucket.detect_conditions()
            except S3Unavailable:
                self._stopping.wait(1.0)
                continue
            if state == "enforced":
                log.info("S3: the bucket enforces conditional writes; job claims use If-None-Match / If-Match")
            else:
                log.warning(
                    "S3: the bucket ignores conditional writes; they are checked by reading first, and claims are "
                    "read back after %.1f s",
                    self.leases.settle_s,
                )
            return

    def _keep(self) -> None:
        self._detect()
        renewed = observed = cancels = time.monotonic()
        renew_ok = True
        while not self._stopping.wait(_TICK_S):
            now = time.monotonic()
            try:
                if now - renewed >= (self.renew_every if renew_ok else _TICK_S):
                    renewed = now
                    running = self.running() if self.running is not None else self.leases.held.keys()
                    renew_ok = self.leases.renew(set(running))
                if now - observed >= self.observe_every:
                    observed = now
                    self.leases.observe()
                if now - cancels >= _CANCEL_CHECK_S:
                    cancels = now
                    self.leases.check_cancels()
                    self.leases.end_finished(self.pending)
            except S3Unavailable as exc:
                log.warning("job leases: %s (retried)", exc)
            except Exception:  # the keeper must not die: ownership would silently lapse
                log.exception("job leases: unexpected error (retried)")
